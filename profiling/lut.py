"""The measured latency lookup table: one entry per cost component, for one device, runtime and dtype.

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
 "correction": {"kind": "none|affine|per_type", "a", "b", "factors": {component: f}},
 "validation": {...} | null,
 "method": "in-context-1", "canary_ref_ms": c,
 "programs": {program id: {"arch", "median_ms", "sigma_ms", "sessions": [...]}, ...},
 "design": {programs, unknowns, rank, gauge}, "monotonicity": {...},
 "timing": {"lowering_s", "measuring_s", "solving_s", "graphs_lowered", "graphs_from_cache"},
 "sessions": [{"started", "seconds", "load_average": {...}, ...}], "load_average": {"build": {...}, "validation": {...}}}
```

Entries are solved from whole programs (`easrec.profiling.components.design_programs`): each entry is
what its component adds inside a whole shipped graph, the runtime's per-call overhead is the
`overhead` entry and is counted once per model. The correction that validation picks is applied per
component (`LatencyTable.component_cost`: factor of the component's type × entry, the intercept `b`
on `overhead`), so the corrected cost stays additive and `expected_cost` stays exact.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import platform
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch

from easrec.cost import COMPONENT_FIELDS, Component, CostModel, components, space_components
from easrec.errors import EasrecError, atomic_write_json
from easrec.space import Arch, SearchSpace, reference_arch

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
METHOD = "in-context-1"
# Device fingerprint fields that must agree for a table to be used (hostname and python may differ).
FINGERPRINT_FIELDS = ("kind", "cpu", "cores", "threads", "os", "machine", "runtime", "runtime_version", "dtype")
ENTRY_FIELDS = ("median_ms", "p10_ms", "p90_ms", "runs")
CORRECTION_KINDS = ("none", "affine", "per_type")


def device_fingerprint(device_info: dict[str, Any], runtime: str, dtype: str) -> dict[str, Any]:
    """The fingerprint a table stores: the device's `info()` plus runtime name, version and dtype."""
    from easrec.export.lowering import runtime_version

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
        return self.data["entries"]

    @property
    def device(self) -> dict[str, Any]:
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

    def component_cost(self, component: Component) -> float:
        """Corrected cost of one component: factor(type) × entry, plus the intercept on `overhead`."""
        v = self.factor(component.name) * self.raw_component_cost(component)
        if component.name == "overhead":
            v += self.correction[1]
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


# ---------------------------------------------------------------- solving entries from whole programs

def program_value(record: dict[str, Any]) -> tuple[float, float]:
    """(value, σ) of a measured program: the fastest of its sessions' medians (interference only adds time)."""
    sessions = record.get("sessions") or [record]
    best = min(sessions, key=lambda s: float(s["median_ms"]))
    return float(best["median_ms"]), float(best.get("sigma_ms", 0.0))


def prior_costs(unknowns: list[str], space: SearchSpace, n_items: int, scale_ms_per_mflop: float, overhead_ms: float) -> np.ndarray:
    """The gauge prior: FLOPs (plus the embedding's and mask's elementwise work) × a fitted ms/MFLOP."""
    from easrec.cost.flops import FlopsCostModel

    flops = FlopsCostModel(space, n_items)
    out = np.zeros(len(unknowns))
    for j, cid in enumerate(unknowns):
        c = _component(cid)
        if c.name == "overhead":
            out[j] = overhead_ms
            continue
        work = flops.component_cost(c)
        if c.name == "embedding":
            L, d = int(c.get("L")), int(c.get("d"))
            work += 2.0 * (3 * L * d + L * L) / 1e6
        out[j] = scale_ms_per_mflop * work
    return out


def _component(cid: str) -> Component:
    name, *fields = cid.split("/")
    key = []
    for f in fields:
        k, v = f.split("=", 1)
        key.append((k, int(v) if v.lstrip("-").isdigit() else v))
    return Component(name, tuple(key))


# Relative weight of each type's prior: the embedding's is weak, so in the directions whole programs
# cannot resolve it takes what the once-per-model parts (last block, scoring) do not explain by FLOPs:
# "embedding + the program's fixed costs beyond the call overhead".
PRIOR_WEIGHT: dict[str, float] = {"embedding": 1e-3}


def solve_entries(design, programs: dict[str, dict[str, Any]], space: SearchSpace, n_items: int,
                  ridge: float = 1e-10) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Entries from measured whole programs: non-negative least squares on relative error, a FLOPs prior
    (weight `ridge`, tiny: it only decides the directions whole programs cannot resolve, the gauge).

    Returns (entries, info); info holds the sensitivity of every entry to every program
    (`info["G"]`, d entry / d program time), the programs' values and σ, and the null space of the
    design (`info["null"]`, [unknown, gauge direction]) that says which differences are measured.
    """
    from scipy.optimize import lsq_linear

    from easrec.cost.flops import FlopsCostModel
    from easrec.profiling.components import OVERHEAD_PROGRAM

    pids = [p for p, _ in design.programs]
    A = design.matrix(pids)
    vals = np.array([program_value(programs[p])[0] for p in pids])
    sig = np.array([program_value(programs[p])[1] for p in pids])
    t = np.maximum(vals, 1e-6)
    # σ floor: timer resolution and the round-to-round spread a handful of rounds cannot see.
    sig = np.maximum(sig, np.maximum(0.005 * t, 5e-4))
    flops = FlopsCostModel(space, n_items)
    archs = dict(design.programs)
    ov = float(vals[pids.index(OVERHEAD_PROGRAM)]) if OVERHEAD_PROGRAM in pids else 0.0
    work = np.array([flops.cost(archs[p]) if archs[p] is not None else 0.0 for p in pids])
    rest = np.maximum(t - ov, 0.0)
    scale = float((rest @ work) / max(work @ work, 1e-12)) if work.any() else 0.0
    x0 = prior_costs(design.unknowns, space, n_items, scale, ov)
    # Relative deviations from the prior: where whole programs cannot split a sum, the larger part
    # takes the larger share of what the prior missed (an absolute weight drove small parts to 0).
    floor = 1e-3 * float(np.median(x0[x0 > 0])) if (x0 > 0).any() else 1e-6
    pw = np.array([PRIOR_WEIGHT.get(u.split("/", 1)[0], 1.0) for u in design.unknowns]) / np.maximum(x0, floor)
    w = 1.0 / t
    Aw = A * w[:, None]
    lam = math.sqrt(ridge) * pw
    # The prior's shape, not its level: each component type gets a free scale s_type ≥ 0 (what FLOPs
    # miss differs by type: a wide FFN is much cheaper than its FLOPs say), fitted with the entries:
    # minimise |W(Ax − t)|² + ridge·|P(x − X0 s)|², x ≥ 0, s ≥ 0.
    types = sorted({u.split("/", 1)[0] for u in design.unknowns})
    X0 = np.zeros((len(design.unknowns), len(types)))
    for j, u in enumerate(design.unknowns):
        X0[j, types.index(u.split("/", 1)[0])] = x0[j]
    U, T = len(design.unknowns), len(types)
    M = np.vstack([np.hstack([Aw, np.zeros((len(pids), T))]), np.hstack([np.diag(lam), -lam[:, None] * X0])])
    y = np.concatenate([t * w, np.zeros(U)])
    res = lsq_linear(M, y, bounds=(0.0, np.inf), method="bvls")
    x = np.maximum(res.x[:U], 0.0)
    type_scale = {ty: float(v) for ty, v in zip(types, res.x[U:])}
    x0 = X0 @ res.x[U:]  # the fitted prior, reported per entry
    _, sv, vt = np.linalg.svd(A, full_matrices=True)
    rank = int((sv > 1e-9 * max(1.0, sv.max())).sum())
    null = vt[rank:].T  # [unknown, gauge]
    # d x / d t [unknown, program]: the least-squares solution's, with the gauge then set by the prior
    # (x = x_data + N c, c minimising the weighted distance to the prior: a projection along N).
    G = np.linalg.pinv(Aw) * w[None, :]
    if null.size:
        D2 = pw**2
        P = np.eye(len(design.unknowns)) - null @ np.linalg.solve(null.T @ (D2[:, None] * null), null.T * D2[None, :])
        G = P @ G
    sx = np.sqrt((G**2) @ (sig**2))
    runs = np.array([sum(int(s.get("runs", 1)) for s in (programs[p].get("sessions") or [programs[p]])) for p in pids])
    entries: dict[str, dict[str, Any]] = {}
    for j, cid in enumerate(design.unknowns):
        med, s = float(x[j]), float(sx[j])
        support = np.abs(G[j]) > 1e-6
        entries[cid] = {
            "median_ms": med, "p10_ms": max(0.0, med - 1.2816 * s), "p90_ms": med + 1.2816 * s, "sigma_ms": s,
            "runs": int(max(1, runs[support].sum() if support.any() else 1)), "prior_ms": float(x0[j]),
            "measured": bool(np.linalg.norm(null[j]) < 1e-8) if null.size else True,
        }
    fitted = A @ x
    info = {"pids": pids, "G": G, "values": vals, "sigma": sig, "sigma_x": sx, "x": x, "null": null, "prior_scale": type_scale,
            "unknowns": list(design.unknowns),
            "max_rel_residual": float(np.max(np.abs(fitted - vals) / t)), "bounds_active": int(np.sum(x <= 1e-12))}
    return entries, info


# ---------------------------------------------------------------- monotonicity

SIZE_FIELDS = ("L", "d", "heads", "ffn")


def _beyond_noise(small: float, large: float, s_small: float, s_large: float, rel: float, z: float, abs_ms: float) -> tuple[bool, float]:
    tol = max(z * math.hypot(s_small, s_large), rel * large, abs_ms)
    return small - large > tol, tol


def monotonicity_violations(entries: dict[str, dict[str, Any]], rel: float = 0.05, z: float = 3.0, abs_ms: float = 0.002,
                            null: np.ndarray | None = None, unknowns: list[str] | None = None) -> list[dict[str, Any]]:
    """Pairs (smaller, larger) of entries of one component type where the one smaller in every size costs
    more beyond noise: by more than max(z·σ of the difference, rel × larger, abs_ms).

    With the design's null space (`null`, rows in `unknowns` order) only pairs whose difference whole
    programs measure are compared: a difference the prior set says nothing about the device.
    """
    index = {u: j for j, u in enumerate(unknowns or [])}
    groups: dict[tuple, list[tuple[dict, str]]] = {}
    for cid in entries:
        c = _component(cid)
        key = dict(c.key)
        sizes = {k: v for k, v in key.items() if k in SIZE_FIELDS}
        other = tuple((k, v) for k, v in c.key if k not in SIZE_FIELDS)
        if sizes:
            groups.setdefault((c.name, other), []).append((sizes, cid))
    out = []
    for members in groups.values():
        for sa, a in members:
            for sb, b in members:
                if a == b or sa == sb or any(sa[k] > sb[k] for k in sa):
                    continue
                if null is not None and null.size and a in index and b in index:
                    if np.linalg.norm(null[index[a]] - null[index[b]]) > 1e-8:
                        continue
                ea, eb = entries[a], entries[b]
                bad, tol = _beyond_noise(float(ea["median_ms"]), float(eb["median_ms"]), float(ea.get("sigma_ms", 0.0)),
                                         float(eb.get("sigma_ms", 0.0)), rel, z, abs_ms)
                if bad:
                    out.append({"what": "entry", "smaller": a, "larger": b, "smaller_ms": float(ea["median_ms"]),
                                "larger_ms": float(eb["median_ms"]), "excess_ms": float(ea["median_ms"]) - float(eb["median_ms"]),
                                "tolerance_ms": tol})
    out.sort(key=lambda v: -v["excess_ms"] / max(v["tolerance_ms"], 1e-9))
    return out


def _smaller_or_equal(a: Arch, b: Arch) -> bool:
    """Whether program `a` is no larger than `b` in every size (same depth, kind, head size and gates)."""
    if (a.depth, a.attention, a.head_size, a.gates) != (b.depth, b.attention, b.head_size, b.gates):
        return False
    return a.max_len <= b.max_len and a.d <= b.d and all(
        x.heads <= y.heads and x.ffn <= y.ffn for x, y in zip(a.layers, b.layers))


def program_violations(design, programs: dict[str, dict[str, Any]], rel: float = 0.05, z: float = 3.0,
                       abs_ms: float = 0.002) -> list[dict[str, Any]]:
    """Pairs of measured whole programs where the one smaller in every size took longer, beyond noise."""
    archs = [(pid, a) for pid, a in design.programs if a is not None and pid in programs]
    out = []
    for pa, a in archs:
        for pb, b in archs:
            if pa == pb or not _smaller_or_equal(a, b):
                continue
            (va, sa), (vb, sb) = program_value(programs[pa]), program_value(programs[pb])
            bad, tol = _beyond_noise(va, vb, sa, sb, rel, z, abs_ms)
            if bad:
                out.append({"what": "program", "smaller": pa, "larger": pb, "smaller_ms": va, "larger_ms": vb,
                            "excess_ms": va - vb, "tolerance_ms": tol})
    out.sort(key=lambda v: -v["excess_ms"] / max(v["tolerance_ms"], 1e-9))
    return out


def programs_to_remeasure(violations: list[dict[str, Any]], info: dict[str, Any], unknowns: list[str],
                          per_violation: int = 3, cap: int | None = None) -> list[str]:
    """Programs behind the violations: both programs of a program pair; for an entry pair, the programs
    that move its two entries most (|d entry / d program| × σ). At most `cap`."""
    index = {u: j for j, u in enumerate(unknowns)}
    G, sig, pids = info["G"], info["sigma"], info["pids"]
    chosen: list[str] = []
    for v in violations:
        if v.get("what") == "program":
            picks = [v["smaller"], v["larger"]]
        else:
            contrib = np.abs(G[index[v["smaller"]]]) * sig + np.abs(G[index[v["larger"]]]) * sig
            picks = [pids[i] for i in np.argsort(-contrib)[:per_violation] if contrib[i] > 0]
        for p in picks:
            if p not in chosen:
                chosen.append(p)
    cap = cap if cap is not None else max(4, len(pids) // 4)
    return chosen[:cap]


# ---------------------------------------------------------------- build

def _session_summary(started: str, clock, monitor, lowerer, measured: int, measuring_s: float) -> dict[str, Any]:
    return {"started": started, "seconds": clock.elapsed(), "load_average": monitor.summary(),
            "programs_measured": measured, "lowering_s": lowerer.seconds if lowerer else 0.0,
            "measuring_s": measuring_s, "graphs_lowered": lowerer.lowered if lowerer else 0,
            "graphs_from_cache": lowerer.hits if lowerer else 0}


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
    chunk: int = 48,
    cache: bool | str | Path | None = True,
    seed: int = 0,
) -> LatencyTable:
    """Measure the whole programs that pin down every component of `space` (plus `extra`, default the
    reference SASRec) and solve the entries into `out`.

    Resumes: programs already in `out` (same device, runtime, dtype, space, n_items) are kept and never
    measured again; the file is rewritten atomically after every group of `chunk` programs (and on
    Ctrl-C). Lowered graphs come from the cache (`cache`: True for `lowering_cache_dir()`, a folder,
    or None). Entries that break monotonicity beyond noise get their programs re-measured (at most
    `settings.remeasure_passes` times). `progress(done, total, what)` counts measured programs.
    """
    from easrec.export.lowering import check
    from easrec.profiling import protocol
    from easrec.profiling.components import design_programs

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
        if data.get("method") != METHOD:
            if not table.missing(space, [] if extra is None else extra):
                log.info("%s: complete table from the per-component method; kept as it is", out)
                return LatencyTable.load(out, space=space)
            raise EasrecError(f"{out}: field 'method' is {data.get('method')!r}, not {METHOD!r}: a partial table of the "
                              "per-component method cannot be resumed; use another --out")
    else:
        data = new_data(fingerprint, space, n_items, batch, settings.to_dict())
    extra = [reference_arch()] if extra is None else list(extra)
    clock = protocol.Clock()
    started = datetime.datetime.now().isoformat(timespec="seconds")
    monitor = protocol.LoadMonitor()
    t_design = protocol.Clock()
    design = design_programs(space, extra)
    data["design"] = {"programs": len(design.programs), "unknowns": len(design.unknowns), "rank": design.rank,
                      "gauge": design.gauge, "candidates": design.candidates}
    programs = data.setdefault("programs", {})
    timing = data.setdefault("timing", {"lowering_s": 0.0, "measuring_s": 0.0, "solving_s": 0.0,
                                        "graphs_lowered": 0, "graphs_from_cache": 0})
    timing["solving_s"] = float(timing.get("solving_s", 0.0)) + t_design.elapsed()
    total = len(design.programs)
    todo = [(pid, arch) for pid, arch in design.programs if pid not in programs]
    if progress:
        progress(total - len(todo), total, "")
    if not todo and data.get("monotonicity") is not None and not LatencyTable(data).missing(space, extra):
        return LatencyTable.load(out, space=space)  # finished before: nothing is measured, solved or recorded
    lowerer = None
    measuring_s = 0.0
    measured = 0
    canary: dict[str, Any] = {}

    def save() -> None:
        atomic_write_json(out, data)

    def finish_session() -> None:
        data["build_seconds"] = float(data.get("build_seconds", 0.0)) + clock.elapsed()
        summary = _session_summary(started, clock, monitor, lowerer, measured, measuring_s)
        data.setdefault("sessions", []).append(summary)
        data.setdefault("load_average", {})["build"] = summary["load_average"]
        if lowerer is not None:
            timing["lowering_s"] = float(timing.get("lowering_s", 0.0)) + lowerer.seconds
            timing["graphs_lowered"] = int(timing.get("graphs_lowered", 0)) + lowerer.lowered
            timing["graphs_from_cache"] = int(timing.get("graphs_from_cache", 0)) + lowerer.hits
        timing["measuring_s"] = float(timing.get("measuring_s", 0.0)) + measuring_s

    try:
        with protocol.Lowerer(runtime, dtype, workers, cache=cache) as lowerer:
            if todo:
                jobs = [("program", pid, (None if arch is None else arch.to_dict(), n_items, seed)) for pid, arch in todo]
                lowered = lowerer.lower_many(
                    jobs, (lambda d, n: progress(total - len(todo), total, f"lowering {d}/{n}")) if progress else None)
                canary_file = protocol.lower_canary(lowerer)
                monitor.sample()
                for group in protocol.chunks(lowered, chunk):
                    t0 = protocol.Clock()
                    rts = protocol.measure_graphs(device, group, canary_file, threads, settings, seed=seed + measured,
                                                  monitor=monitor)
                    measuring_s += t0.elapsed()
                    cm = protocol.canary_median(rts.values())
                    if data.get("canary_ref_ms") is None and cm is not None:
                        data["canary_ref_ms"] = cm
                    rounds = next(iter(rts.values())).canary_ms
                    if rounds:  # the round canaries: the first round of the session against its last
                        canary.setdefault("start_ms", rounds[0])
                        canary["end_ms"] = rounds[-1]
                    arch_of = dict(todo)
                    for key, _, _ in group:
                        rec = protocol.session_record(rts[key], data.get("canary_ref_ms"), settings)
                        arch = arch_of[key]
                        programs[key] = {"arch": None if arch is None else arch.to_dict(), **_top(rec), "sessions": [rec]}
                        measured += 1
                    save()
                    if progress:  # after the save: what a progress callback interrupts is kept
                        first = total - len(todo) + measured - len(group)
                        for j, (key, _, _) in enumerate(group):
                            progress(first + j + 1, total, key)
            if canary.get("start_ms"):
                canary["drift"] = protocol.drift(canary["start_ms"], canary["end_ms"])
                data.setdefault("canary", []).append(canary)
            t_solve = protocol.Clock()
            remeasure_s = _solve_and_check(data, design, space, n_items, device, lowerer, threads, settings, seed, monitor)
            measuring_s += remeasure_s
            timing["solving_s"] = float(timing.get("solving_s", 0.0)) + t_solve.elapsed() - remeasure_s
    finally:
        finish_session()
        save()
    if canary.get("drift") is not None and abs(canary["drift"]) > 0.1:
        log.warning("%s: canary drifted %+.1f%% during profiling: the machine is noisy", out, 100 * canary["drift"])
    log.info("%s: %d programs (%d measured now), lowering %.0f s (%d lowered, %d from cache), measuring %.0f s, load %s",
             out, total, measured, timing["lowering_s"], timing["graphs_lowered"], timing["graphs_from_cache"],
             timing["measuring_s"], _load_text(data["load_average"].get("build")))
    return LatencyTable.load(out, space=space)


def _load_text(summary: dict[str, Any] | None) -> str:
    if not summary or not summary.get("available", True):
        return "n/a"
    return f"{summary['mean']:.1f} (max {summary['max']:.1f}) on {summary.get('cores')} cores"


def _top(rec: dict[str, Any]) -> dict[str, Any]:
    """The summary fields of a session, as a program record's top level."""
    return {k: rec[k] for k in ("median_ms", "p10_ms", "p90_ms", "sigma_ms", "raw_median_ms", "rounds", "runs") if k in rec}


def _solve_and_check(data, design, space, n_items, device, lowerer, threads, settings, seed, monitor) -> float:
    """Solve the entries; re-measure the programs behind monotonicity violations; solve again.

    Returns the seconds spent re-measuring."""
    from easrec.profiling import protocol

    programs = data["programs"]

    def check(entries, info):
        return program_violations(design, programs) + monotonicity_violations(entries, null=info["null"], unknowns=info["unknowns"])

    entries, info = solve_entries(design, programs, space, n_items)
    violations = check(entries, info)
    history = {"initial_violations": len(violations), "passes": [], "examples": violations[:5]}
    archs = dict(design.programs)
    spent = 0.0
    for p in range(max(0, int(settings.remeasure_passes))):
        if not violations:
            break
        pids = programs_to_remeasure(violations, info, design.unknowns)
        log.info("LUT: %d pair(s) break monotonicity beyond noise (worst: %s %.4f ms > %s %.4f ms); re-measuring %d programs",
                 len(violations), violations[0]["smaller"], violations[0]["smaller_ms"],
                 violations[0]["larger"], violations[0]["larger_ms"], len(pids))
        jobs = [("program", pid, (None if archs[pid] is None else archs[pid].to_dict(), n_items, seed)) for pid in pids]
        lowered = lowerer.lower_many(jobs)
        canary_file = protocol.lower_canary(lowerer)
        t0 = protocol.Clock()
        rts = protocol.measure_graphs(device, lowered, canary_file, threads, settings, seed=seed + 7919 * (p + 1),
                                      monitor=monitor)
        spent += t0.elapsed()
        for pid in pids:
            rec = protocol.session_record(rts[pid], data.get("canary_ref_ms"), settings)
            programs[pid].setdefault("sessions", []).append(rec)
            value, sigma = program_value(programs[pid])
            programs[pid].update(median_ms=value, sigma_ms=sigma)
        entries, info = solve_entries(design, programs, space, n_items)
        before = len(violations)
        violations = check(entries, info)
        history["passes"].append({"remeasured": pids, "violations_before": before, "violations_after": len(violations)})
    history["final_violations"] = len(violations)
    history["remaining"] = violations[:10]
    if violations:
        log.warning("LUT: %d monotonicity violation(s) remain after re-measuring (worst: %s > %s)", len(violations),
                    violations[0]["smaller"], violations[0]["larger"])
    data["entries"] = entries
    data["monotonicity"] = history
    data["solve"] = {"max_rel_residual": info["max_rel_residual"], "bounds_active": info["bounds_active"],
                     "gauge": design.gauge, "prior_scale": info["prior_scale"],
                     "prior": "FLOPs (+ the embedding's elementwise work) x a fitted scale per component type; "
                              "decides only what whole programs cannot tell apart"}
    return spent
