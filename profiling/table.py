"""The latency lookup table as a cost model (`LatencyTable`), its file format and the checks on reading it.

One entry per cost component, for one device, runtime and dtype.

File format (JSON, `format` = 1; fields after `validation` were added by the in-context method and
are optional for readers):

```
{"format": 1, "unit": "ms",
 "device": {kind, spec, cpu, cores, threads, os, machine, ..., "runtime", "runtime_version", "dtype"},
 "space": {...SearchSpace.to_dict()}, "space_hash": "...", "n_items": N, "batch": 1,
 "protocol": {warmup, min_runs, max_runs, max_seconds, rounds, canary_runs, normalize, ...},
 "entries": {"attention/L=200/d=64/heads=2/hs=16/kind=softmax":
               {"median_ms", "p10_ms", "p90_ms", "runs", "sigma_ms"}, ...},
 "canary": [{"start_ms", "end_ms", "drift"}, ...],          one per profiling session (resumes add one)
 "build_seconds": s,
 "correction": {"kind": "none|affine|affine_blocks|per_type", "a", "b", "per_block", "factors": {component: f}},
 "validation": {...} | null,
 "method": "in-context-1", "canary_ref_ms": c,
 "programs": {program id: {"arch", "median_ms", "sigma_ms", "sessions": [...]}, ...},
 "design": {programs, unknowns, rank, gauge}, "monotonicity": {...},
 "timing": {"lowering_s", "measuring_s", "solving_s", "graphs_lowered", "graphs_from_cache"},
 "sessions": [{"started", "seconds", "load_average": {...}, ...}], "load_average": {"build": {...}, "validation": {...}}}
```

Entries are solved from whole programs (`easrec.profiling.solve`, built by `easrec.profiling.lut`): each entry is
what its component adds inside a whole shipped graph, the runtime's per-call overhead is the
`overhead` entry and is counted once per model. The correction that validation picks is applied per
component (`LatencyTable.component_cost`: factor of the component's type × entry, the intercept `b`
on `overhead`), so the corrected cost stays additive and `expected_cost` stays exact.
"""

from __future__ import annotations

import json
import logging
import math
import platform
from pathlib import Path
from typing import Any, Iterable

import torch

from easrec.cost import COMPONENT_FIELDS, Component, CostModel, components, space_components
from easrec.errors import EasrecError
from easrec.io import atomic_write_json
from easrec.export.lowering import runtime_version
from easrec.space import Arch, SearchSpace

log = logging.getLogger(__name__)

# 2: components of the post-LN SASRec; a table measured on the pre-LN blocks (1) is refused and re-measured.
FORMAT_VERSION = 2
METHOD = "in-context-1"
# Device fingerprint fields that must agree for a table to be used (hostname and python may differ).
FINGERPRINT_FIELDS = ("kind", "cpu", "cores", "threads", "os", "machine", "runtime", "runtime_version", "dtype")
ENTRY_FIELDS = ("median_ms", "p10_ms", "p90_ms", "runs")
CORRECTION_KINDS = ("none", "affine", "affine_blocks", "per_type")
BLOCK_COMPONENTS = ("attention", "last_attention")  # one per block: where a per-block correction is paid


def device_fingerprint(device_info: dict[str, Any], runtime: str, dtype: str) -> dict[str, Any]:
    """The fingerprint a table stores: the device's `info()` plus runtime name, version and dtype."""
    return {**device_info, "runtime": runtime, "runtime_version": runtime_version(runtime), "dtype": dtype}


class LatencyTable(CostModel):
    """Measured per-component costs with the per-device correction validation picked, applied per component.

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
        """Component id → measured entry."""
        return self.data["entries"]

    @property
    def device(self) -> dict[str, Any]:
        """The device fingerprint the table was measured on."""
        return self.data["device"]

    @property
    def correction(self) -> tuple[float, float]:
        """(a, b) of the correction: the common factor (1 for per-type factors) and the intercept."""
        c = self.data.get("correction") or {}
        return float(c.get("a", 1.0)), float(c.get("b", 0.0))

    def factor(self, name: str) -> float:
        """Correction factor of one component type (`a` unless the correction has per-type factors)."""
        c = self.data.get("correction") or {}
        factors = c.get("factors") or {}
        return float(factors.get(name, c.get("a", 1.0)))

    def raw_component_cost(self, component: Component) -> float:
        """The entry of one component as measured (no correction)."""
        entry = self.entries.get(component.id())
        if entry is None:
            raise EasrecError(f"{self.source}: field 'entries' has no entry '{component.id()}' (profile this search space)")
        return float(entry["median_ms"])

    @property
    def per_block(self) -> float:
        """The correction's cost per block (ms; `affine_blocks` only, else 0)."""
        return float((self.data.get("correction") or {}).get("per_block") or 0.0)

    def component_cost(self, component: Component) -> float:
        """Corrected cost of one component: factor(type) × entry, plus the intercept on `overhead` and the
        per-block term on each block's attention."""
        v = self.factor(component.name) * self.raw_component_cost(component)
        if component.name == "overhead":
            v += self.correction[1]
        elif component.name in BLOCK_COMPONENTS:
            v += self.per_block
        return v

    def raw_cost(self, arch: Arch) -> float:
        """Σ of the entries of `arch`, without the correction."""
        return float(sum(self.raw_component_cost(c) for c in components(arch)))

    def type_sums(self, arch: Arch) -> dict[str, float]:
        """Σ of the raw entries of `arch` per component type (what per-type corrections are fitted on)."""
        out: dict[str, float] = {}
        for c in components(arch):
            out[c.name] = out.get(c.name, 0.0) + self.raw_component_cost(c)
        return out

    def cost(self, arch: Arch) -> float:
        """Predicted latency (ms) of `arch`: the Σ of corrected components (exactly additive)."""
        return super().cost(arch)

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
        """Write the table atomically."""
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
        Every refusal is one EasrecError line naming the file and the field or entry at fault.
        """
        path = Path(path)
        if not path.is_file():
            raise EasrecError(f"{path}: no such LUT file")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise EasrecError(f"{path}: not a readable LUT file ({_one_line(exc)})") from exc
        if not text.strip():
            raise EasrecError(f"{path}: empty file, not a JSON LUT (an interrupted write? rebuild it with `easrec profile`)")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise EasrecError(f"{path}: not valid JSON at line {exc.lineno} column {exc.colno} ({exc.msg}): "
                              "truncated or edited? rebuild it with `easrec profile`") from exc
        except (ValueError, RecursionError) as exc:
            raise EasrecError(f"{path}: not a readable JSON LUT ({_one_line(exc)})") from exc
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


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] or type(exc).__name__


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
    if not isinstance(data["space"], dict):
        raise EasrecError(f"{source}: field 'space' must be an object, got {type(data['space']).__name__}")
    try:
        space = SearchSpace.from_dict(data["space"])
    except (TypeError, ValueError, EasrecError) as exc:
        raise EasrecError(f"{source}: field 'space' is not a search space ({_one_line(exc)})") from exc
    spec = data.get("canary_spec")
    if spec is not None:
        # The canary every measurement of this table is divided by: a wrong one would rescale them all.
        try:
            Arch.from_dict(spec["arch"])
            ok = isinstance(spec["n_items"], int) and not isinstance(spec["n_items"], bool) and spec["n_items"] >= 1
        except (TypeError, KeyError, ValueError, EasrecError):
            ok = False
        if not ok:
            raise EasrecError(f"{source}: field 'canary_spec' must be {{'arch': an architecture, 'n_items': a positive "
                              f"integer}}, got {spec!r:.80}")
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
    _check_correction(data.get("correction"), source)
    if "programs" in data and not isinstance(data["programs"], dict):
        raise EasrecError(f"{source}: field 'programs' must be an object")
    if complete:
        table_space = space
        missing = [c.id() for c in space_components(table_space) if c.id() not in entries]
        if missing:
            raise EasrecError(
                f"{source}: field 'entries' does not cover the search space: missing {', '.join(missing[:5])}"
                f"{' …' if len(missing) > 5 else ''} ({len(missing)} in all; rerun `easrec profile` with the same --out to resume)"
            )


def _check_correction(corr: Any, source: str) -> None:
    if corr is None:
        return
    if not isinstance(corr, dict) or not _num(corr.get("a")) or not _num(corr.get("b")) or corr["a"] <= 0:
        raise EasrecError(f"{source}: field 'correction' must be {{\"a\": positive number, \"b\": number, ...}}, got {corr!r}")
    kind = corr.get("kind", "affine")
    if kind not in CORRECTION_KINDS:
        raise EasrecError(f"{source}: field 'correction.kind' is {kind!r}, expected one of {', '.join(CORRECTION_KINDS)}")
    if kind == "affine_blocks" and not _num(corr.get("per_block")):
        raise EasrecError(f"{source}: field 'correction.per_block' must be a number for an affine_blocks correction, "
                          f"got {corr.get('per_block')!r}")
    factors = corr.get("factors")
    if factors is None:
        return
    if not isinstance(factors, dict):
        raise EasrecError(f"{source}: field 'correction.factors' must be an object of component type → factor")
    for name, f in factors.items():
        if name not in COMPONENT_FIELDS:
            raise EasrecError(f"{source}: field 'correction.factors.{name}' names an unknown component type")
        if not _num(f) or f < 0:
            raise EasrecError(f"{source}: field 'correction.factors.{name}' must be a non-negative number, got {f!r}")


def new_data(fingerprint: dict[str, Any], space: SearchSpace, n_items: int, batch: int, settings: dict) -> dict[str, Any]:
    """An empty table."""
    return {
        "format": FORMAT_VERSION, "unit": "ms", "device": fingerprint, "space": space.to_dict(),
        "space_hash": space.hash(), "n_items": n_items, "batch": batch, "protocol": settings,
        "entries": {}, "canary": [], "build_seconds": 0.0, "correction": {"kind": "none", "a": 1.0, "b": 0.0},
        "validation": None, "method": METHOD, "canary_ref_ms": None, "programs": {},
        "timing": {"lowering_s": 0.0, "measuring_s": 0.0, "solving_s": 0.0, "graphs_lowered": 0, "graphs_from_cache": 0},
        "sessions": [], "load_average": {},
        "created_with": {"python": platform.python_version(), "torch": torch.__version__},
    }
