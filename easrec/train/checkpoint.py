"""Run directories and model files: what `easrec train`/`search` write and `export`/`evaluate` read.

A run directory holds `config.json` (data spec and options), `arch.json`, `mapping.json` (raw ids),
`model.pt` (best weights), `checkpoint.pt` (resumable training state) and `metrics.json`.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import torch

from easrec import __version__
from easrec.errors import EasrecError, atomic_write_bytes, atomic_write_json
from easrec.model import SASRec
from easrec.space import Arch

log = logging.getLogger(__name__)

MODEL_FORMAT = "easrec-model"
MODEL_FILE = "model.pt"
CHECKPOINT_FILE = "checkpoint.pt"


def save_torch(obj: Any, path: Path) -> None:
    """torch.save to `path` atomically (a crash mid-write leaves the previous file intact)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_torch(path: Path) -> Any:
    """torch.load with a one-line error for a missing or corrupt file."""
    path = Path(path)
    if not path.exists():
        raise EasrecError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many kinds for a truncated/corrupt zip
        raise EasrecError(f"{path}: corrupt checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})") from None


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
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise EasrecError(f"{path}: weights do not match the architecture ({first})") from None
    return model.eval()


def read_json(path: Path, what: str = "file") -> dict:
    """Read a JSON file with one-line errors."""
    path = Path(path)
    if not path.exists():
        raise EasrecError(f"{path}: {what} not found")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise EasrecError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically."""
    atomic_write_json(path, obj)


def run_data_config(run: Path) -> dict:
    """The data options a run was trained with (`config.json` → `data`), to reload the same split."""
    return read_json(Path(run) / "config.json", "run config")["data"]


def load_run_dataset(run: Path):
    """Reload the data set a run was trained on, with the same filters (for evaluation, export parity)."""
    from easrec.data import load_dataset

    cfg = run_data_config(run)
    return load_dataset(cfg["spec"], **cfg.get("options", {}))
