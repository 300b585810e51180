"""What a report reads: a run directory's files, and the facts it derives from them (model, FLOPs, LUT cost)."""

from __future__ import annotations

import logging
import platform
from pathlib import Path
from typing import Any

from easrec.cost.flops import FlopsCostModel
from easrec.data import load_dataset
from easrec.errors import EasrecError
from easrec.io import package_version, read_json
from easrec.profiling.table import LatencyTable
from easrec.space import Arch, SearchSpace

log = logging.getLogger(__name__)

RUN_FILES = {"artifacts": "artifacts.json", "bench": "bench.json", "energy": "energy.json", "lut": "lut.json",
             "commands": "commands.json", "data_stats": "data_stats.json"}
VERSION_PACKAGES = ("easrec", "torch", "executorch", "onnxruntime", "onnx", "codecarbon", "numpy", "matplotlib")


def load_value(value: Any, key: str | None = None) -> Any:
    """A path (str/Path) → its JSON; a dict wrapping a list under `key` → the list; otherwise as is."""
    if isinstance(value, (str, Path)):
        value = read_json(Path(value))
    if key and isinstance(value, dict) and isinstance(value.get(key), list):
        return value[key]
    return value


def as_list(value: Any, key: str) -> list[dict]:
    """The rows of a file or value: a list of dicts (one dict becomes a list of one)."""
    value = load_value(value, key)
    if value is None:
        return []
    if isinstance(value, dict):
        return [value]
    return [v for v in value if isinstance(v, dict)]


def load_run(run_dir: str | Path) -> dict[str, Any]:
    """metrics.json (required), arch.json and config.json (optional) of a run directory."""
    run = Path(run_dir)
    if not run.is_dir():
        raise EasrecError(f"{run}: no such run directory")
    if not (run / "metrics.json").is_file():
        raise EasrecError(f"{run}: no metrics.json (train or search the run first)")
    out = {"dir": str(run), "metrics": read_json(run / "metrics.json")}
    arch = out["metrics"].get("arch")
    if (run / "arch.json").is_file():
        arch = read_json(run / "arch.json")
    out["arch"] = arch
    out["config"] = read_json(run / "config.json") if (run / "config.json").is_file() else {}
    return out


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


def model_of(row: dict, artifacts: list[dict]) -> str:
    """Which model (baseline or subnet) a bench/energy/artifact row is about."""
    if row.get("model"):
        return str(row["model"])
    path = str(row.get("artifact") or row.get("path") or "")
    for a in artifacts:
        if a.get("path") and Path(str(a["path"])).name == Path(path).name and a.get("model"):
            return str(a["model"])
    return "baseline" if "baseline" in Path(path).name.lower() else "subnet"


def artifact_label(row: dict) -> str:
    """The file name of the artifact a row names."""
    path = row.get("artifact") or row.get("path") or "?"
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
