"""What a report reads: a run directory's records (`easrec.rundir.RunDir`), and the facts it derives from them (FLOPs, LUT cost)."""

from __future__ import annotations

import logging
import platform
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any

from easrec.cost.flops import FlopsCostModel
from easrec.data import load_dataset
from easrec.errors import EasrecError
from easrec.io import package_version, read_json
from easrec.profiling.table import LatencyTable
from easrec.records import (
    R, ArtifactRecord, BenchRecord, EnergyRecord, SearchRecord, TrainRecord, records_from,
)
from easrec.rundir import ARTIFACTS, BENCH, COMMANDS, DATA_STATS, ENERGY, LUT, RunDir
from easrec.space import Arch, SearchSpace

log = logging.getLogger(__name__)

RUN_FILES = {"artifacts": ARTIFACTS, "bench": BENCH, "energy": ENERGY, "lut": LUT, "commands": COMMANDS,
             "data_stats": DATA_STATS}
VERSION_PACKAGES = ("easrec", "torch", "executorch", "onnxruntime", "onnx", "codecarbon", "numpy", "matplotlib")


@dataclass
class RunInputs:
    """One run's records as the report reads them: metrics (train and search), architecture, config."""

    dir: str
    train: TrainRecord
    search: SearchRecord | None
    arch: dict | None
    config: dict = field(default_factory=dict)


def load_run(run_dir: str | Path) -> RunInputs:
    """metrics.json (required) as train and search records, arch.json and config.json (optional)."""
    run = RunDir(run_dir)
    if not run.path.is_dir():
        raise EasrecError(f"{run.path}: no such run directory")
    train = run.train()
    if train is None:
        raise EasrecError(f"{run.path}: no metrics.json (train or search the run first)")
    arch = run.read("arch.json")
    return RunInputs(dir=str(run.path), train=train, search=run.search(),
                     arch=arch if isinstance(arch, dict) else train.arch, config=run.read("config.json") or {})


def records_of(value: Any, cls: type[R], source: str) -> list[R]:
    """Rows given to `write_report`: a file path, a list of record objects, or records already parsed."""
    if isinstance(value, (str, Path)):
        return records_from(read_json(Path(value)), cls, str(value))
    if isinstance(value, list) and all(isinstance(v, cls) for v in value):
        return value
    return records_from(value, cls, source)


def one_record(value: Any, cls: type[R], source: str) -> R | None:
    """One record given to `write_report` (a file path, a dict or the record), or None."""
    if value is None or isinstance(value, cls):
        return value
    if isinstance(value, (str, Path)):
        return cls.from_dict(read_json(Path(value)), str(value))
    return cls.from_dict(value, source)


def versions() -> dict[str, str]:
    """Python, platform and the versions of the packages easrec's numbers depend on."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    out.update({pkg: package_version(pkg, "not installed") for pkg in VERSION_PACKAGES})
    return out


def arch_obj(arch: Any) -> Arch | None:
    """The `Arch` of a JSON architecture, or None when it is not one."""
    if not isinstance(arch, dict):
        return None
    try:
        return Arch.from_dict(arch)
    except Exception:
        return None


def n_items_of(*sources: Any) -> int | None:
    """The catalogue size the first source that has one states."""
    for s in sources:
        if isinstance(s, dict):
            for k in ("n_items", "items"):
                if isinstance(s.get(k), int) and s[k] > 0:
                    return int(s[k])
    return None


def mflops(arch: Any, n_items: int | None) -> float | None:
    """FLOPs of one inference of `arch` in the default space, or None when not computable."""
    a = arch_obj(arch)
    if a is None or not n_items:
        return None
    try:
        return float(FlopsCostModel(SearchSpace(), n_items).cost(a))
    except Exception as exc:  # an arch outside the default space, an API change: no FLOPs, no crash
        log.debug("FLOPs unavailable: %s", exc)
        return None


def lut_cost(lut: dict | None, arch: Any) -> float | None:
    """The LUT-predicted cost of `arch`, or None without a usable LUT."""
    if not lut or not isinstance(arch, dict):
        return None
    try:
        return float(LatencyTable(lut).cost(arch_obj(arch)))
    except Exception as exc:
        log.debug("LUT prediction unavailable: %s", exc)
        return None


def model_of(row: EnergyRecord | BenchRecord | ArtifactRecord, artifacts: list[ArtifactRecord]) -> str | None:
    """The model (baseline or subnet) a row names, or that the artifacts.json row of the same file names."""
    if row.model:
        return row.model
    path = getattr(row, "artifact", None) or getattr(row, "path", None)
    return next((a.model for a in artifacts if path and a.path == path), None)


def artifact_label(row: EnergyRecord | BenchRecord | ArtifactRecord) -> str:
    """The file name of the artifact a row names."""
    path = getattr(row, "artifact", None) or getattr(row, "path", None) or "?"
    return Path(str(path)).name


def reload_stats(config: dict) -> dict | None:
    """Statistics of the run's data set, reloaded from config.json's data spec (None when it cannot be)."""
    spec = (config or {}).get("data")
    if not isinstance(spec, dict) or "spec" not in spec:
        return None
    try:
        return load_dataset(spec["spec"], **(spec.get("options") or {})).stats()
    except Exception as exc:
        log.info("data statistics unavailable: %s", exc)
        return None
