"""Monotonicity checks of a latency table: a component or program smaller in every size must not cost more.

Violations beyond noise name the programs to measure again (`programs_to_remeasure`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from easrec.profiling.solve import component_from_id, program_value
from easrec.space import Arch


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
        c = component_from_id(cid)
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
