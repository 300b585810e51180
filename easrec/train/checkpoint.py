"""Run directories and model files: what `easrec train`/`search` write and `export`/`evaluate` read.

A run directory holds `config.json` (data spec and options), `arch.json`, `mapping.json` (raw ids),
`model.pt` (best weights), `checkpoint.pt` (resumable training state) and `metrics.json`.

`.pt` files are loaded with `torch.load(weights_only=True)`: unpickling anything else can run code,
and run folders are shared and downloaded. What `save_torch` stores is therefore limited to what
that loader accepts: tensors (torch.Generator states are ByteTensors), None, bools, numbers,
strings, bytes, torch.Size/dtype/device, and dicts, lists, tuples and sets of them. It converts
numpy scalars to Python numbers, numpy arrays to tensors, dataclasses to dicts and paths to
strings, and refuses anything else (TypeError: a programming error, found when saving rather than
when a user resumes).
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import pickle
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from easrec import __version__
from easrec.data import load_dataset
from easrec.errors import EasrecError
from easrec.io import atomic_write_bytes, atomic_write_json, read_json
from easrec.model import SASRec
from easrec.space import Arch

log = logging.getLogger(__name__)

MODEL_FORMAT = "easrec-model"
MODEL_FILE = "model.pt"
CHECKPOINT_FILE = "checkpoint.pt"


# Leaves torch.load(weights_only=True) accepts as they are.
_PLAIN = (type(None), bool, int, float, complex, str, bytes, bytearray, torch.Tensor, torch.Size, torch.dtype, torch.device)


def weights_only_safe(obj: Any, where: str = "checkpoint") -> Any:
    """`obj` in the types `torch.load(weights_only=True)` accepts (see the module docstring); TypeError naming the place of anything else.

    Containers are copied only where something inside them changes, so a state_dict keeps its metadata.
    """
    import numpy as np

    if isinstance(obj, np.generic):  # before _PLAIN: np.float64 is a float, yet pickles as a numpy global
        return obj.item()
    if isinstance(obj, _PLAIN):
        return obj
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return weights_only_safe(dataclasses.asdict(obj), where)
    if isinstance(obj, dict):
        items = {k: weights_only_safe(v, f"{where}.{k}") for k, v in obj.items()}
        for k in items:
            if not isinstance(k, (str, int, float, bool, type(None))):
                raise TypeError(f"{where}: key {k!r} of type {type(k).__name__} cannot be loaded with weights_only=True")
        if all(items[k] is obj[k] for k in obj) and type(obj) in (dict, OrderedDict):
            return obj
        if not isinstance(obj, OrderedDict):
            return items
        copy = OrderedDict(items)
        copy.__dict__.update(getattr(obj, "__dict__", {}))  # a state_dict's _metadata (module versions)
        return copy
    if isinstance(obj, (list, tuple, set, frozenset)):
        values = [weights_only_safe(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        if type(obj) in (list, tuple, set) and all(a is b for a, b in zip(values, obj)):
            return obj
        return set(values) if isinstance(obj, (set, frozenset)) else tuple(values) if isinstance(obj, tuple) else values
    raise TypeError(f"{where}: a {type(obj).__module__}.{type(obj).__name__} cannot be loaded with weights_only=True; "
                    "store tensors, numbers, strings, lists and dicts")


def save_torch(obj: Any, path: Path) -> None:
    """torch.save to `path` atomically (a crash mid-write leaves the previous file intact), weights-only loadable."""
    buf = io.BytesIO()
    torch.save(weights_only_safe(obj, Path(path).name), buf)
    atomic_write_bytes(path, buf.getvalue())


def _weights_only_detail(exc: Exception) -> str:
    """What torch's weights-only unpickler refused ('Unsupported global: posix.system'), without its boilerplate."""
    boilerplate = ("Weights only load failed", "(1)", "(2)", "Please file an issue", "Check the documentation")
    for line in str(exc).splitlines():
        line = line.strip().removeprefix("WeightsUnpickler error:").strip()
        if line and not line.startswith(boilerplate):
            # Drop torch's advice to allowlist the global: that is exactly what must not be done for an unknown file.
            return line.split(" Please use ")[0].rstrip(".")[:160]
    return type(exc).__name__


def load_torch(path: Path) -> Any:
    """torch.load of tensors and plain data only (weights_only=True); one-line errors for a missing, corrupt or unsafe file."""
    path = Path(path)
    if not path.exists():
        raise EasrecError(f"{path}: checkpoint not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about pickle protocols on the way to refusing a file
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise EasrecError(f"{path}: refused: not a weights-only file ({_weights_only_detail(exc)}); easrec loads "
                          "tensors and plain data only, since unpickling anything else can run code") from None
    except Exception as exc:  # torch raises many kinds for a truncated/corrupt zip
        first = (str(exc).splitlines() or [""])[0][:120]
        raise EasrecError(f"{path}: corrupt checkpoint ({type(exc).__name__}{': ' + first if first else ''})") from None


def save_model(model: SASRec, path: Path, extra: dict | None = None) -> None:
    """Save weights with the architecture and catalogue size they belong to."""
    payload = {
        "format": MODEL_FORMAT,
        "easrec_version": __version__,
        "arch": model.arch.to_dict(),
        "n_items": model.n_items,
        "dropout": model.dropout,
        "state_dict": model.state_dict(),
        **(extra or {}),
    }
    save_torch(payload, Path(path))


def load_model(path: Path) -> SASRec:
    """Load a model file (or the `model.pt` inside a run directory) in eval mode."""
    path = Path(path)
    if path.is_dir():
        path = path / MODEL_FILE
        if not path.exists():
            raise EasrecError(f"{path.parent}: no {MODEL_FILE} in this run directory (did training finish?)")
    payload = load_torch(path)
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise EasrecError(f"{path}: not an easrec model file (field 'format' missing or wrong)")
    for field in ("arch", "n_items", "state_dict"):
        if field not in payload:
            raise EasrecError(f"{path}: model file has no field '{field}'")
    arch = Arch.from_dict(payload["arch"], source=f"{path}: arch")
    model = SASRec(arch, int(payload["n_items"]), float(payload.get("dropout", 0.0)))
    if "ln_f.weight" in payload["state_dict"] and "ln_in.weight" not in payload["state_dict"]:
        raise EasrecError(f"{path}: holds the earlier pre-LN SASRec, which easrec replaced by the post-LN one; "
                          "retrain it with `easrec train`")
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise EasrecError(f"{path}: weights do not match the architecture ({first})") from None
    return model.eval()


# Run records are JSON written atomically; `read_json` stays importable from here (export/ reads runs with it).
write_json = atomic_write_json


def run_data_config(run: Path) -> dict:
    """The data options a run was trained with (`config.json` → `data`), to reload the same split."""
    return read_json(Path(run) / "config.json", "run config")["data"]


def load_run_dataset(run: Path):
    """Reload the data set a run was trained on, with the same filters (for evaluation, export parity)."""
    cfg = run_data_config(run)
    return load_dataset(cfg["spec"], **cfg.get("options", {}))
