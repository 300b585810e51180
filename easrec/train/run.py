"""`easrec train` as a library call: data → SASRec → early-stopped training → run directory."""

from __future__ import annotations

import json
import logging
import platform
import resource
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from easrec import __version__
from easrec.data import Dataset
from easrec.errors import EasrecError
from easrec.io import atomic_write_json, atomic_write_text, read_json
from easrec.model import SASRec
from easrec.model.sasrec import DEFAULT_DROPOUT
from easrec.rundir import RunDir
from easrec.space import Arch, LayerArch
from easrec.train.checkpoint import MODEL_FILE, save_model
from easrec.train.evaluate import evaluate_model, model_ranks
from easrec.train.metrics import KS, per_user_metrics
from easrec.train.trainer import TrainConfig, train_model

log = logging.getLogger(__name__)


def sasrec_arch(max_len: int = 200, d: int = 64, layers: int = 2, heads: int = 2, ffn: int = 256,
                attention: str = "softmax", gates: bool = False) -> Arch:
    """A plain SASRec architecture; heads split the width d as in the original model."""
    for name, value in (("max-len", max_len), ("d", d), ("layers", layers), ("heads", heads), ("ffn", ffn)):
        if value < 1:
            raise EasrecError(f"--{name} must be at least 1, got {value}")
    if d % heads:
        raise EasrecError(f"--d ({d}) must be divisible by --heads ({heads})")
    return Arch(max_len, d, tuple(LayerArch(heads, ffn) for _ in range(layers)), attention, gates, d // heads)


def test_metrics(model: SASRec, dataset: Dataset, keep_seen: bool, active: Arch | None = None) -> dict:
    """Full-ranking test metrics, plus the other seen-items convention for comparison with RecBole."""
    split = dataset.split()
    test = evaluate_model(model, split, "test", active=active, keep_seen=keep_seen)
    other = evaluate_model(model, split, "test", active=active, keep_seen=not keep_seen)
    return {"test": test, ("test_excluding_seen" if keep_seen else "test_keep_seen"): other}


def write_run(out: Path, model: SASRec, dataset: Dataset, data_cfg: dict, train_cfg: TrainConfig, metrics: dict,
              extra_config: dict | None = None) -> None:
    """Write the run directory: config, arch, mapping, model weights, metrics, per-user test metrics."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "config.json", {"data": data_cfg, "train": asdict(train_cfg), **(extra_config or {}),
                                      "versions": versions()})
    atomic_write_json(out / "arch.json", model.arch.to_dict())
    atomic_write_json(out / "mapping.json", dataset.mapping())
    save_model(model, out / MODEL_FILE)
    RunDir(out).write_metrics(metrics)
    write_per_user(out / PER_USER_FILE, per_user_record(model, dataset, data_cfg, train_cfg.keep_seen))


PER_USER_FILE = "per_user.json"
PER_USER_FORMAT = "easrec-per-user"


def data_fingerprint(dataset: Dataset, data_cfg: dict | None = None) -> dict:
    """What identifies a data set and its split, so two runs can be checked to be on the same users and targets."""
    lengths = dataset.lengths()
    return {
        "name": dataset.name,
        "spec": (data_cfg or {}).get("spec", dataset.source),
        "options": (data_cfg or {}).get("options", {}),
        "users": int(dataset.n_users),
        "items": int(dataset.n_items),
        "interactions": int(lengths.sum()),
        **dataset.split().fingerprint(),
    }


def per_user_record(model: SASRec, dataset: Dataset, data_cfg: dict | None, keep_seen: bool,
                    active: Arch | None = None) -> dict:
    """Per-user full-ranking test metrics (HR/NDCG/MRR @ 5, 10, 20 and the rank) with the data fingerprint."""
    split = dataset.split()
    ranks = model_ranks(model, split, "test", active=active, keep_seen=keep_seen)
    per_user = per_user_metrics(ranks, KS)
    return {
        "format": PER_USER_FORMAT,
        "version": 1,
        "split": "test",
        "protocol": "full",
        "keep_seen": bool(keep_seen),
        "data": data_fingerprint(dataset, data_cfg),
        "users": split.valid_users.tolist(),
        "ranks": ranks.tolist(),
        # Six decimals: the file stays small and per-user values keep far more precision than any mean needs.
        "metrics": {name: np.round(values, 6).tolist() for name, values in per_user.items()},
    }


def write_per_user(path: Path, record: dict) -> None:
    """Write per_user.json compactly (one line: large catalogues have many users)."""
    atomic_write_text(path, json.dumps(record, separators=(",", ":")) + "\n")


def read_per_user(run: Path) -> dict:
    """Read RUN/per_user.json, checking its format."""
    path = Path(run) / PER_USER_FILE if Path(run).is_dir() else Path(run)
    if not path.is_file():
        raise EasrecError(f"{path}: per-user metrics not found (runs trained before easrec wrote them must be re-trained)")
    record = read_json(path, "per-user metrics")
    if not isinstance(record, dict) or record.get("format") != PER_USER_FORMAT:
        raise EasrecError(f"{path}: not an easrec per-user metrics file (field 'format' missing or wrong)")
    for key in ("data", "users", "metrics", "keep_seen"):
        if key not in record:
            raise EasrecError(f"{path}: missing field '{key}'")
    return record


def versions() -> dict:
    """Versions that produced a result."""
    return {"easrec": __version__, "torch": torch.__version__, "python": platform.python_version()}


def train_run(dataset: Dataset, data_cfg: dict, arch: Arch, cfg: TrainConfig, out: Path, *, dropout: float = DEFAULT_DROPOUT,
              resume: bool = False, on_epoch: Callable[[dict], None] | None = None) -> dict:
    """Train a SASRec of `arch` on `dataset` and write the run directory; returns metrics.json's content."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    model = SASRec(arch, dataset.n_items, dropout)
    split = dataset.split()
    result = train_model(model, split, cfg, out, resume=resume, on_epoch=on_epoch)
    metrics = {
        "valid": result.best_valid,
        **test_metrics(model, dataset, cfg.keep_seen),
        "protocol": "full",
        "keep_seen": cfg.keep_seen,
        "best_epoch": result.best_epoch,
        "steps": result.steps,
        "best_step": result.best_step,
        "epochs": len(result.epoch_seconds),
        "epoch_seconds": result.epoch_seconds,
        "train_seconds": result.train_seconds,
        "seconds_to_best": result.seconds_to_best,
        "samples_per_second": result.samples_per_second,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "params": sum(p.numel() for p in model.parameters()),
        "arch": arch.to_dict(),
        "history": result.history,
    }
    write_run(out, model, dataset, data_cfg, cfg, metrics, {"dropout": dropout})
    return metrics
