"""The measured latency lookup table: one entry per cost component, for one device, runtime and dtype.

File format (JSON, `format` = 1):

```
{"format": 1, "unit": "ms",
 "device": {kind, spec, cpu, cores, threads, os, machine, ..., "runtime", "runtime_version", "dtype"},
 "space": {...SearchSpace.to_dict()}, "space_hash": "...", "n_items": N, "batch": 1,
 "protocol": {warmup, min_runs, max_runs, max_seconds},
 "entries": {"attention/L=200/d=64/heads=2/hs=16/kind=softmax":
               {"median_ms", "p10_ms", "p90_ms", "runs", "raw_median_ms", "minus"}, ...},
 "canary": [{"start_ms", "end_ms", "drift"}, ...],          one per profiling run (resumes add one)
 "build_seconds": s, "correction": {"a": 1.0, "b": 0.0},     cost(arch) = a · Σ entries + b
 "validation": {...} | null}
```

Entry values are *net*: the measured median minus the runtime's fixed per-call cost (the `overhead`
entry, counted once per model), and for gates minus the ungated FFN (`minus` names what was
subtracted, `raw_median_ms` keeps the measurement).
"""

from __future__ import annotations

import json
import logging
import math
import platform
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from easrec.cost import COMPONENT_FIELDS, Component, CostModel, space_components
from easrec.errors import EasrecError, atomic_write_json
from easrec.space import Arch, SearchSpace, reference_arch

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
# Device fingerprint fields that must agree for a table to be used (hostname and python may differ).
FINGERPRINT_FIELDS = ("kind", "cpu", "cores", "threads", "os", "machine", "runtime", "runtime_version", "dtype")
ENTRY_FIELDS = ("median_ms", "p10_ms", "p90_ms", "runs")


def device_fingerprint(device_info: dict[str, Any], runtime: str, dtype: str) -> dict[str, Any]:
    """The fingerprint a table stores: the device's `info()` plus runtime name, version and dtype."""
    from easrec.export.lowering import runtime_version

    return {**device_info, "runtime": runtime, "runtime_version": runtime_version(runtime), "dtype": dtype}


class LatencyTable(CostModel):
    """Measured per-component costs with a per-device affine correction of their sum.

    Latency (ms) as `easrec profile` writes it; an energy table from `easrec.profiling.energy.energy_lut`
    has the same format with `unit: mJ` (entries = measured power × LUT latency).
    """

    def __init__(self, data: dict[str, Any], source: str = "LUT"):
        self.data = data
        self.unit = str(data.get("unit", "ms"))
        self.source = source
        self.space = SearchSpace.from_dict(data["space"])
        self.n_items = int(data["n_items"])

    # ------------------------------------------------------------------ queries
    @property
    def entries(self) -> dict[str, dict[str, Any]]:
        return self.data["entries"]

    @property
    def device(self) -> dict[str, Any]:
        return self.data["device"]

    @property
    def correction(self) -> tuple[float, float]:
        c = self.data.get("correction") or {}
        return float(c.get("a", 1.0)), float(c.get("b", 0.0))

    def component_cost(self, component: Component) -> float:
        """Net median latency (ms) of one component."""
        entry = self.entries.get(component.id())
        if entry is None:
            raise EasrecError(f"{self.source}: field 'entries' has no entry '{component.id()}' (profile this search space)")
        return float(entry["median_ms"])

    def raw_cost(self, arch: Arch) -> float:
        """Σ of the entries of `arch`, without the affine correction."""
        return super().cost(arch)

    def cost(self, arch: Arch) -> float:
        """Predicted latency (ms) of `arch`: a · Σ entries + b."""
        a, b = self.correction
        return a * self.raw_cost(arch) + b

    def expected_cost(self, probs, gates: bool | None = None) -> torch.Tensor:
        """E[cost] (the affine correction is linear, so it commutes with the expectation)."""
        a, b = self.correction
        return a * super().expected_cost(probs, gates) + b

    def fingerprint(self) -> dict[str, Any]:
        """Identity of this cost model (for search results)."""
        d = self.device
        return {"kind": "lut", "device": d.get("spec", d.get("kind")), "cpu": d.get("cpu"), "runtime": d.get("runtime"),
                "dtype": d.get("dtype"), "n_items": self.n_items, "space": self.data["space_hash"]}

    def missing(self, space: SearchSpace | None = None, extra: Iterable[Arch] = ()) -> list[str]:
        """Component ids the space (and `extra` archs) needs that the table lacks."""
        space = space or self.space
        return [c.id() for c in space_components(space, extra) if c.id() not in self.entries]

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path) -> None:
        atomic_write_json(path, self.data)

    @classmethod
    def load(
        cls,
        path: str | Path,
        space: SearchSpace | None = None,
        device_info: dict[str, Any] | None = None,
        *,
        complete: bool = True,
    ) -> "LatencyTable":
        """Read and check a table; refuse another device/runtime fingerprint, another space, or a bad file.

        `device_info` is a fingerprint (`device_fingerprint(...)`) or a device's `info()` (then only
        the fields it has are compared). With `complete`, every component of the space must be present.
        """
        path = Path(path)
        if not path.is_file():
            raise EasrecError(f"{path}: no such LUT file")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise EasrecError(f"{path}: not a readable JSON LUT ({exc})") from exc
        check_data(data, str(path), complete=complete)
        table = cls(data, source=str(path))
        if space is not None and space.hash() != data["space_hash"]:
            missing = table.missing(space)
            detail = f"; missing entries: {', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}" if missing else ""
            raise EasrecError(
                f"{path}: field 'space' was measured for search space {data['space_hash']}, not {space.hash()}{detail}"
            )
        if device_info is not None:
            check_device(data["device"], device_info, str(path))
        return table


def check_device(stored: dict[str, Any], current: dict[str, Any], source: str) -> None:
    """Raise naming the first fingerprint field where `current` disagrees with `stored`."""
    for key in FINGERPRINT_FIELDS:
        if key in current and key in stored and current[key] != stored[key]:
            raise EasrecError(
                f"{source}: field 'device.{key}' is {stored[key]!r} but this device/runtime has {current[key]!r} "
                "(a LUT is valid for one device, runtime and dtype)"
            )


def _num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_data(data: Any, source: str, complete: bool = True) -> None:
    """Consistency of a table's JSON: every field present and typed, entries ordered p10 ≤ median ≤ p90, ≥ 0."""
    if not isinstance(data, dict):
        raise EasrecError(f"{source}: expected a JSON object")
    for key in ("format", "device", "space", "space_hash", "n_items", "batch", "entries"):
        if key not in data:
            raise EasrecError(f"{source}: missing field '{key}'")
    if data["format"] != FORMAT_VERSION:
        raise EasrecError(f"{source}: field 'format' is {data['format']!r}, this easrec reads {FORMAT_VERSION}")
    if not isinstance(data["device"], dict):
        raise EasrecError(f"{source}: field 'device' must be an object")
    for key in ("runtime", "dtype"):
        if key not in data["device"]:
            raise EasrecError(f"{source}: missing field 'device.{key}'")
    try:
        space = SearchSpace.from_dict(data["space"])
    except (TypeError, EasrecError) as exc:
        raise EasrecError(f"{source}: field 'space' is not a search space ({exc})") from exc
    if space.hash() != data["space_hash"]:
        raise EasrecError(f"{source}: field 'space_hash' {data['space_hash']!r} does not match field 'space' ({space.hash()})")
    for key in ("n_items", "batch"):
        if not isinstance(data[key], int) or isinstance(data[key], bool) or data[key] < 1:
            raise EasrecError(f"{source}: field '{key}' must be a positive integer, got {data[key]!r}")
    entries = data["entries"]
    if not isinstance(entries, dict):
        raise EasrecError(f"{source}: field 'entries' must be an object")
    for cid, entry in entries.items():
        where = f"entries['{cid}']"
        name = cid.split("/", 1)[0]
        if name not in COMPONENT_FIELDS:
            raise EasrecError(f"{source}: field '{where}' names an unknown component {name!r}")
        if not isinstance(entry, dict):
            raise EasrecError(f"{source}: field '{where}' must be an object")
        for f in ENTRY_FIELDS:
            if f not in entry:
                raise EasrecError(f"{source}: field '{where}.{f}' is missing")
            if not _num(entry[f]) or entry[f] < 0:
                raise EasrecError(f"{source}: field '{where}.{f}' must be a non-negative number, got {entry[f]!r}")
        if not isinstance(entry["runs"], int) or entry["runs"] < 1:
            raise EasrecError(f"{source}: field '{where}.runs' must be a positive integer, got {entry['runs']!r}")
        if not entry["p10_ms"] <= entry["median_ms"] <= entry["p90_ms"]:
            raise EasrecError(
                f"{source}: field '{where}' is inconsistent: needs p10_ms ≤ median_ms ≤ p90_ms, got "
                f"{entry['p10_ms']} / {entry['median_ms']} / {entry['p90_ms']}"
            )
    corr = data.get("correction")
    if corr is not None:
        if not isinstance(corr, dict) or not _num(corr.get("a")) or not _num(corr.get("b")) or corr["a"] <= 0:
            raise EasrecError(f"{source}: field 'correction' must be {{\"a\": positive number, \"b\": number}}, got {corr!r}")
    if complete:
        table_space = space
        missing = [c.id() for c in space_components(table_space) if c.id() not in entries]
        if missing:
            raise EasrecError(
                f"{source}: field 'entries' does not cover the search space: missing {', '.join(missing[:5])}"
                f"{' …' if len(missing) > 5 else ''} ({len(missing)} in all; rerun `easrec profile` with the same --out to resume)"
            )


def new_data(fingerprint: dict[str, Any], space: SearchSpace, n_items: int, batch: int, settings: dict) -> dict[str, Any]:
    """An empty table."""
    return {
        "format": FORMAT_VERSION, "unit": "ms", "device": fingerprint, "space": space.to_dict(),
        "space_hash": space.hash(), "n_items": n_items, "batch": batch, "protocol": settings,
        "entries": {}, "canary": [], "build_seconds": 0.0, "correction": {"a": 1.0, "b": 0.0}, "validation": None,
        "created_with": {"python": platform.python_version(), "torch": torch.__version__},
    }


def _net(raw: Any, minus: float) -> dict[str, Any]:
    """An entry from raw stats minus a subtracted median (clamped at 0, order kept)."""
    med = max(0.0, raw.median_ms - minus)
    p10 = min(med, max(0.0, raw.p10_ms - minus))
    p90 = max(med, raw.p90_ms - minus)
    return {"median_ms": med, "p10_ms": p10, "p90_ms": p90, "runs": int(raw.runs)}


def build_lut(
    device,
    space: SearchSpace,
    runtime: str = "executorch",
    dtype: str = "fp32",
    n_items: int = 10000,
    threads: int = 1,
    out: str | Path = "lut.json",
    progress: Callable[[int, int, str], None] | None = None,
    *,
    batch: int = 1,
    settings=None,
    workers: int | None = None,
    extra: Iterable[Arch] | None = None,
    chunk: int = 16,
) -> LatencyTable:
    """Measure every component of `space` (plus `extra`, default the reference SASRec) into `out`.

    Resumes: entries already in `out` (same device, runtime, dtype, space, n_items) are kept and not
    measured again. The file is rewritten atomically after every chunk of entries. `progress(done,
    total, component_id)` is called after each entry (also for the kept ones at the start).
    """
    from easrec.export.lowering import check
    from easrec.profiling import protocol
    from easrec.profiling.components import base_component

    check(runtime, dtype)
    if batch != 1:
        raise EasrecError("batch: only batch 1 is profiled (on-device inference serves one user at a time)")
    settings = settings or protocol.Settings()
    out = Path(out)
    fingerprint = device_fingerprint(device.info(), runtime, dtype)
    fingerprint["threads"] = threads
    if out.exists():
        table = LatencyTable.load(out, device_info=fingerprint, complete=False)
        if table.data["space_hash"] != space.hash():
            raise EasrecError(f"{out}: field 'space' was measured for another search space ({table.data['space_hash']}); use another --out")
        if table.n_items != n_items:
            raise EasrecError(f"{out}: field 'n_items' is {table.n_items}, not {n_items}; use another --out")
        data = table.data
    else:
        data = new_data(fingerprint, space, n_items, batch, settings.to_dict())
    extra = [reference_arch()] if extra is None else list(extra)
    todo_all = space_components(space, extra)
    # The overhead first (everything subtracts it), then bases before the components that subtract them.
    todo_all.sort(key=lambda c: 0 if c.name == "overhead" else 2 if base_component(c) is not None else 1)
    total = len(todo_all)
    entries = data["entries"]
    done = sum(1 for c in todo_all if c.id() in entries)
    if progress:
        progress(done, total, "")
    todo = [c for c in todo_all if c.id() not in entries]
    clock = protocol.Clock()
    canary: dict[str, Any] = {}
    if todo:
        with protocol.Lowerer(runtime, dtype, workers) as lowerer:
            canary["start_ms"] = protocol.measure_canary(device, lowerer, threads, settings)
            try:
                for group in protocol.chunks(todo, chunk):
                    lowered = lowerer.lower_many(
                        [("component", c.id(), (c, n_items, space.head_size)) for c in group]
                    )
                    for c, (_, path, inputs) in zip(group, lowered):
                        stats = protocol.measure(device, Path(path), inputs, threads, settings)
                        Path(path).unlink(missing_ok=True)
                        base = base_component(c)
                        if c.name == "overhead":
                            minus_id, minus = None, 0.0
                        elif base is not None:
                            minus_id = base.id()
                            minus = float(entries[minus_id]["raw_median_ms"])
                        else:
                            minus_id = "overhead"
                            minus = float(entries["overhead"]["raw_median_ms"])
                        entry = _net(stats, minus)
                        entry.update(raw_median_ms=stats.median_ms, raw_p10_ms=stats.p10_ms, raw_p90_ms=stats.p90_ms,
                                     minus=minus_id, load_ms=stats.load_ms, first_ms=stats.first_ms)
                        entries[c.id()] = entry
                        done += 1
                        if progress:
                            progress(done, total, c.id())
                    data["build_seconds"] = float(data.get("build_seconds", 0.0)) + clock.elapsed()
                    clock = protocol.Clock()
                    atomic_write_json(out, data)
                canary["end_ms"] = protocol.measure_canary(device, lowerer, threads, settings)
                canary["drift"] = protocol.drift(canary["start_ms"], canary["end_ms"])
                data.setdefault("canary", []).append(canary)
            finally:
                data["build_seconds"] = float(data.get("build_seconds", 0.0)) + clock.elapsed()
                atomic_write_json(out, data)
        if canary.get("drift") is not None and abs(canary["drift"]) > 0.1:
            log.warning("%s: canary drifted %+.1f%% during profiling: the machine is noisy", out, 100 * canary["drift"])
    return LatencyTable.load(out, space=space)
