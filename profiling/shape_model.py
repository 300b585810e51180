"""A latency table from few whole programs: every entry a small linear model of its component's shape.

The entries design (`components.design_programs`) lowers one whole program per unknown entry (259 for
the default space), and lowering is 95-98 % of a cold build. Here each component type instead has a
handful of parameters (a constant, its matmul work, its attention mixing, its elementwise rows; 35 in
the default space), fitted by least squares on relative error from K whole programs chosen
D-optimally from the entries design's programs (the choice reads only a FLOPs prior, never a
measurement). Every entry of the space is then its shape's features · θ, so the table, its
corrections and its validation stay what they are.

Why it can work: XNNPACK's kernels cost about what their shapes say, and whole programs already carry
the per-program effects. On the stored default-space tables (`benchmarks/lut_fewer_programs.py`), 40-60
programs predicted 100 held-out subnets as well as all 259 did.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any, Iterable

import numpy as np

from easrec.cost import Component, components, space_components
from easrec.cost.flops import FlopsCostModel
from easrec.errors import EasrecError
from easrec.profiling.components import ProgramDesign, design_programs
from easrec.profiling.solve import component_from_id, program_value
from easrec.space import Arch, SearchSpace

DEFAULT_PROGRAMS = 60
DESIGN_KINDS = ("entries", "shape")


def features(c: Component) -> dict[str, float]:
    """Named features of one component: its type's constant, matmul work, mixing work and row counts (per kind).

    Scaled to O(1) for the default space, so that least squares is well conditioned.
    """
    k = dict(c.key)
    n = c.name
    if n == "overhead":
        return {"overhead": 1.0}
    if n == "scoring":
        return {"scoring:1": 1.0, "scoring:d": k["d"] / 64}
    if n == "embedding":
        return {"embedding:1": 1.0, "embedding:Ld": k["L"] * k["d"] / 1e4}
    if n in ("attention", "last_attention"):
        L, d, hs, kind = k["L"], k["d"], k["hs"], k["kind"]
        inner = k["heads"] * hs
        t = f"{n}:{kind}"
        if n == "attention":
            mix = L * L * inner if kind == "softmax" else L * inner * (hs + 1)
            return {f"{t}:1": 1.0, f"{t}:proj": 4 * L * d * inner / 1e6, f"{t}:mix": mix / 1e6,
                    f"{t}:Lh": L * k["heads"] / 1e3, f"{t}:Ld": L * d / 1e4}
        # The last block queries one row: k and v still run over all L.
        mix = L * inner if kind == "softmax" else L * inner * (hs + 1)
        return {f"{t}:1": 1.0, f"{t}:proj": (2 * L + 2) * d * inner / 1e6, f"{t}:mix": mix / 1e6, f"{t}:Ld": L * d / 1e4}
    if n in ("ffn", "gates"):
        L, d, f = k["L"], k["d"], k["ffn"]
        return {f"{n}:1": 1.0, f"{n}:mm": 2 * L * d * f / 1e6, f"{n}:Lf": L * f / 1e4, f"{n}:Ld": L * d / 1e4}
    if n in ("last_ffn", "last_gates"):
        d, f = k["d"], k["ffn"]
        return {f"{n}:1": 1.0, f"{n}:mm": 2 * d * f / 1e6}
    raise ValueError(f"no shape features for component {n!r}")


def program_features(arch: Arch | None) -> dict[str, float]:
    """Summed features of a whole program (None: the overhead program, which runs nothing but the call)."""
    out: dict[str, float] = defaultdict(float)
    if arch is None:
        out["overhead"] = 1.0
        return out
    for c in components(arch):
        for name, v in features(c).items():
            out[name] += v
    return out


def parameter_names(space: SearchSpace, extra: Iterable[Arch] = ()) -> list[str]:
    """The model's parameters: every feature a component of `space` (or of `extra`) has."""
    return sorted({n for c in space_components(space, extra) for n in features(c)})


def feature_matrix(rows: list[dict[str, float]], names: list[str]) -> np.ndarray:
    """Rows of features in `names` order."""
    return np.array([[r.get(n, 0.0) for n in names] for r in rows], dtype=float)


def d_optimal(X: np.ndarray, k: int, seed: int = 0) -> list[int]:
    """Greedy D-optimal choice of k rows of X: each step adds the row of largest leverage (ties at random)."""
    rng = random.Random(seed)
    n, p = X.shape
    chosen: list[int] = []
    M = 1e-6 * np.eye(p)
    left = list(range(n))
    for _ in range(min(k, n)):
        inv = np.linalg.inv(M)
        lev = np.einsum("ij,jk,ik->i", X[left], inv, X[left])
        best = float(lev.max())
        i = rng.choice([i for i, v in zip(left, lev) if v >= best * (1 - 1e-9)])
        chosen.append(i)
        left.remove(i)
        M += np.outer(X[i], X[i])
    return chosen


def prior_ms(arch: Arch | None, flops: FlopsCostModel) -> float:
    """A rough cost to weigh programs by relative error before any is measured (0.01 ms per MFLOP + 0.05 ms)."""
    return 1.0 if arch is None else 0.05 + 0.01 * flops.cost(arch)


def choose_programs(pool: list[tuple[str, Arch | None]], space: SearchSpace, n_items: int, k: int,
                    extra: Iterable[Arch] = (), seed: int = 0) -> list[tuple[str, Arch | None]]:
    """The k programs of `pool` that pin the shape model down best (D-optimal on prior-relative features)."""
    names = parameter_names(space, extra)
    flops = FlopsCostModel(space, n_items)
    X = feature_matrix([program_features(a) for _, a in pool], names)
    S = X / np.array([prior_ms(a, flops) for _, a in pool])[:, None]
    idx = d_optimal(S, max(k, len(names)), seed)
    return [pool[i] for i in idx]


def shape_design(space: SearchSpace, extra: Iterable[Arch] = (), deep: bool = False, n_programs: int | None = None,
                 n_items: int = 10000) -> ProgramDesign:
    """The entries design's programs cut to `n_programs` (default `DEFAULT_PROGRAMS`) chosen for the shape model."""
    extra = list(extra)
    full = design_programs(space, extra, deep=deep)
    k = DEFAULT_PROGRAMS if n_programs is None else int(n_programs)
    chosen = choose_programs(full.programs, space, n_items, k, extra)
    rank = int(np.linalg.matrix_rank(full.matrix([p for p, _ in chosen])))
    return ProgramDesign(chosen, full.unknowns, rank, full.candidates, kind="shape")


def auto_design_kind(space: SearchSpace, extra: Iterable[Arch] = ()) -> str:
    """"shape" where the entries design needs more than twice `DEFAULT_PROGRAMS` programs (the default space:
    259), else "entries" (small spaces: every entry measured exactly costs no more than the shape model's programs)."""
    return "shape" if len(design_programs(space, list(extra)).programs) > 2 * DEFAULT_PROGRAMS else "entries"


def make_design(kind: str, space: SearchSpace, extra: Iterable[Arch] = (), deep: bool = False,
                n_programs: int | None = None, n_items: int = 10000) -> ProgramDesign:
    """The programs a table of design `kind` ("entries" or "shape") measures."""
    if kind not in DESIGN_KINDS:
        raise EasrecError(f"design: must be one of {DESIGN_KINDS}, got {kind!r}")
    if kind == "shape":
        return shape_design(space, extra, deep, n_programs, n_items)
    return design_programs(space, extra, deep=deep)


def solve_shape_entries(design, programs: dict[str, dict[str, Any]], space: SearchSpace, n_items: int,
                        extra: Iterable[Arch] = ()) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Entries of every component from the measured programs of `design`: θ by least squares on relative
    error, each entry = its features · θ (floored at 0). Returns (entries, info) as `solve.solve_entries` does."""
    pids = [p for p, _ in design.programs]
    archs = dict(design.programs)
    names = parameter_names(space, extra)
    X = feature_matrix([program_features(archs[p]) for p in pids], names)
    vals = np.array([program_value(programs[p])[0] for p in pids])
    sig = np.array([program_value(programs[p])[1] for p in pids])
    t = np.maximum(vals, 1e-6)
    sig = np.maximum(sig, np.maximum(0.005 * t, 5e-4))
    w = 1.0 / t
    Xw = X * w[:, None]
    pinv = np.linalg.pinv(Xw)
    theta = pinv @ (t * w)
    F = feature_matrix([features(component_from_id(u)) for u in design.unknowns], names)
    x = np.maximum(F @ theta, 0.0)
    G = (F @ pinv) * w[None, :]  # d entry / d program time
    sx = np.sqrt((G**2) @ (sig**2))
    runs = int(sum(sum(int(s.get("runs", 1)) for s in (programs[p].get("sessions") or [programs[p]])) for p in pids))
    entries = {}
    for j, cid in enumerate(design.unknowns):
        med, s = float(x[j]), float(sx[j])
        entries[cid] = {"median_ms": med, "p10_ms": max(0.0, med - 1.2816 * s), "p90_ms": med + 1.2816 * s,
                        "sigma_ms": s, "runs": runs, "measured": True}
    fitted = X @ theta
    info = {"pids": pids, "G": G, "values": vals, "sigma": sig, "sigma_x": sx, "x": x,
            "null": np.zeros((len(design.unknowns), 0)), "unknowns": list(design.unknowns),
            "theta": {n: float(v) for n, v in zip(names, theta)}, "prior_scale": {},
            "max_rel_residual": float(np.max(np.abs(fitted - vals) / t)), "bounds_active": int(np.sum(F @ theta <= 0))}
    return entries, info
