"""Solving a latency table's entries from measured whole programs (the in-context method).

Each entry is what its component adds inside a whole shipped graph: non-negative least squares on
relative error over the programs of `easrec.profiling.components.design_programs`, with a FLOPs
prior deciding only the directions whole programs cannot resolve (the gauge).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.optimize import lsq_linear

from easrec.cost import Component
from easrec.cost.flops import FlopsCostModel
from easrec.profiling.components import OVERHEAD_PROGRAM
from easrec.space import SearchSpace


def program_value(record: dict[str, Any]) -> tuple[float, float]:
    """(value, σ) of a measured program: the fastest of its sessions' medians (interference only adds time)."""
    sessions = record.get("sessions") or [record]
    best = min(sessions, key=lambda s: float(s["median_ms"]))
    return float(best["median_ms"]), float(best.get("sigma_ms", 0.0))


def prior_costs(unknowns: list[str], space: SearchSpace, n_items: int, scale_ms_per_mflop: float, overhead_ms: float) -> np.ndarray:
    """The gauge prior: FLOPs (plus the embedding's and mask's elementwise work) × a fitted ms/MFLOP."""
    flops = FlopsCostModel(space, n_items)
    out = np.zeros(len(unknowns))
    for j, cid in enumerate(unknowns):
        c = component_from_id(cid)
        if c.name == "overhead":
            out[j] = overhead_ms
            continue
        work = flops.component_cost(c)
        if c.name == "embedding":
            L, d = int(c.get("L")), int(c.get("d"))
            work += 2.0 * (3 * L * d + L * L) / 1e6
        out[j] = scale_ms_per_mflop * work
    return out


def component_from_id(cid: str) -> Component:
    """The `Component` a LUT entry id names ('ffn/d=64/ffn=128' → Component('ffn', (('d', 64), ('ffn', 128))))."""
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
