"""End-to-end validation of a latency table: random whole subnets measured vs the LUT's prediction.

N random subnets of the table's space are extracted from a supernet (`Supernet.extract`), wrapped in
the shipped graph (`TopKGraph`: ids → top-k), lowered with the table's runtime and dtype (through the
lowered-graph cache), and measured on the device with the table's protocol: interleaved rounds with a
canary beside each graph, the median of per-round minima (`easrec.profiling.protocol`); with
`Settings.normalize` divided by the canary and put on the table's canary reference. Rows keep both
the raw and the canary-normalised value, and the noise floor is given for both.

Test-retest noise floor: the first `retest` subnets (≥ 10 by default) are loaded and measured a second
time, in a separate session; the share of them whose two measurements agree within ±10 % is the best
any predictor can score on this machine at this load (printed beside the predictor's share).

Corrections, fitted on half the subnets and scored on the other half (held out):
- `none`: the sum of the entries;
- `affine`: one global `a · Σ entries + b` (the previous method);
- `per_type`: one non-negative factor per component type plus an intercept, ridge-regularised
  towards 1 (`fit_per_type`): measured ≈ Σ_type f_type · Σ entries of that type + b; gates share
  their FFN's factor (`TIED`).
The one with the lowest held-out MAPE is stored in the LUT (`correction`) and applied per component
by `LatencyTable.component_cost`, so the corrected cost stays additive. The analytic FLOPs model gets
the affine treatment on the same subnets, for comparison.
"""

from __future__ import annotations

import datetime
import logging
import random
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from easrec.cost import COMPONENT_FIELDS
from easrec.cost.flops import FlopsCostModel
from easrec.errors import EasrecError, atomic_write_json
from easrec.space import Arch

log = logging.getLogger(__name__)

_SUPERNETS: dict[tuple, Any] = {}
TYPES = tuple(COMPONENT_FIELDS)
RIDGES = (0.001, 0.01, 0.1, 1.0)
# Gates share their FFN's factor: in a gated space every sampled subnet has both, so a separate factor is
# not identified (a fit once set gates to 0 and FFN to 1.23, which would over-predict every ungated model,
# the budget's reference SASRec among them).
TIED = {"gates": "ffn", "last_gates": "last_ffn"}
GROUPS = tuple(t for t in TYPES if t not in TIED)


def subnet_module(space_dict: dict, n_items: int, arch_dict: dict, seed: int = 0):
    """(TopKGraph of the subnet `arch` extracted from a seeded supernet, example padded ids)."""
    from easrec.export.graph import TopKGraph
    from easrec.model.supernet import Supernet
    from easrec.profiling.components import TOP_K, padded_ids
    from easrec.space import SearchSpace

    space = SearchSpace.from_dict(space_dict)
    key = (space.hash(), n_items, seed)
    if key not in _SUPERNETS:
        torch.manual_seed(seed)
        _SUPERNETS.clear()
        _SUPERNETS[key] = Supernet(space, n_items).eval()
    arch = Arch.from_dict(arch_dict)
    sub = _SUPERNETS[key].extract(arch).eval()
    graph = TopKGraph(sub, k=min(TOP_K, n_items)).eval()
    return graph, (padded_ids(arch.max_len, n_items, seed=seed),)


def sample_archs(space, n: int, seed: int = 0) -> list[Arch]:
    """`n` distinct random architectures of `space` (fewer if the space is smaller)."""
    rng = random.Random(seed)
    seen: dict[str, Arch] = {}
    tries = 0
    while len(seen) < n and tries < 50 * n:
        arch = space.sample(rng)
        seen.setdefault(arch.hash(), arch)
        tries += 1
    return list(seen.values())


# ---------------------------------------------------------------- metrics

def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's τ-b between two sequences (ties handled), O(n²)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    if n < 2:
        return float("nan")
    i, j = np.triu_indices(n, k=1)
    dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
    s = float((dx * dy).sum())
    n0 = len(i)
    tx, ty = float((dx == 0).sum()), float((dy == 0).sum())
    denom = np.sqrt((n0 - tx) * (n0 - ty))
    return s / denom if denom > 0 else float("nan")


def fit_affine(pred: Sequence[float], measured: Sequence[float]) -> tuple[float, float]:
    """(a, b) minimising Σ ((a·pred + b − measured) / measured)²; falls back to a ratio fit when degenerate."""
    p, m = np.asarray(pred, float), np.asarray(measured, float)
    w = 1.0 / np.maximum(m, 1e-9)
    A = np.stack([p * w, w], axis=1)
    sol, *_ = np.linalg.lstsq(A, np.ones_like(m), rcond=None)
    a, b = float(sol[0]), float(sol[1])
    if not np.isfinite(a) or a <= 0:
        a, b = float(np.median(m / np.maximum(p, 1e-12))), 0.0
    return a, b


def score(pred: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
    """Share within ±10 %, MAPE (%), max abs % error and Kendall τ of predictions vs measurements."""
    p, m = np.asarray(pred, float), np.asarray(measured, float)
    err = np.abs(p - m) / m
    return {
        "n": int(len(m)),
        "within_10pct": float((err <= 0.10).mean()),
        "mape_pct": float(100 * err.mean()),
        "max_err_pct": float(100 * err.max()),
        "kendall_tau": kendall_tau(p, m),
    }


def evaluate(pred: Sequence[float], measured: Sequence[float], fit_idx: Sequence[int], test_idx: Sequence[int]) -> dict[str, Any]:
    """Fit the affine correction on `fit_idx`, score on `test_idx` (and on all, for reference)."""
    p, m = np.asarray(pred, float), np.asarray(measured, float)
    a, b = fit_affine(p[list(fit_idx)], m[list(fit_idx)])
    corrected = a * p + b
    return {
        "a": a, "b": b,
        "test": score(corrected[list(test_idx)], m[list(test_idx)]),
        "all": score(corrected, m),
        "raw_all": score(p, m),
        "kendall_tau_all": kendall_tau(p, m),
    }


def split(n: int, seed: int = 0) -> tuple[list[int], list[int]]:
    """Random halves (fit, test) of range(n)."""
    idx = list(range(n))
    random.Random(seed + 1).shuffle(idx)
    half = n // 2
    return sorted(idx[:half]), sorted(idx[half:])


# ---------------------------------------------------------------- corrections

def type_matrix(rows: list[dict[str, Any]]) -> np.ndarray:
    """[subnet, component type] sums of raw entries (a row without `type_sums` counts all as one type)."""
    S = np.zeros((len(rows), len(TYPES)))
    for i, r in enumerate(rows):
        sums = r.get("type_sums")
        if sums:
            for t, v in sums.items():
                S[i, TYPES.index(t)] = float(v)
        else:
            S[i, TYPES.index("attention")] = float(r["lut_sum_ms"])
    return S


def grouped(S: np.ndarray) -> np.ndarray:
    """Type sums [subnet, TYPES] → [subnet, GROUPS]: tied types added to the type they share a factor with."""
    G = np.zeros((S.shape[0], len(GROUPS)))
    for j, t in enumerate(TYPES):
        G[:, GROUPS.index(TIED.get(t, t))] += S[:, j]
    return G


def fit_per_type(S: np.ndarray, m: np.ndarray, ridge: float) -> tuple[np.ndarray, float]:
    """Factors f ≥ 0 per column of S and an intercept b minimising Σ ((S f + b − m)/m)² + ridge · Σ (f − 1)².

    Columns absent from every row keep f = 1. The ridge keeps factors the fit cannot see well (few
    subnets, types that always co-occur) at 1, i.e. at the measured entries.
    """
    from scipy.optimize import lsq_linear

    n, T = S.shape
    w = 1.0 / np.maximum(m, 1e-9)
    A = np.hstack([S * w[:, None], w[:, None]])
    y = np.ones(n)
    R = np.hstack([np.sqrt(ridge) * np.eye(T), np.zeros((T, 1))])
    M = np.vstack([A, R])
    rhs = np.concatenate([y, np.sqrt(ridge) * np.ones(T)])
    lo = np.concatenate([np.zeros(T), [-np.inf]])
    hi = np.full(T + 1, np.inf)
    res = lsq_linear(M, rhs, bounds=(lo, hi), method="bvls")
    f, b = res.x[:T], float(res.x[T])
    f[~(S > 0).any(0)] = 1.0
    return f, b


def _per_type_with_cv(S: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, float, float]:
    """`fit_per_type` with the ridge chosen by leave-one-out error on the fitting rows."""
    best = None
    for ridge in RIDGES:
        errs = []
        for i in range(len(m)):
            keep = np.arange(len(m)) != i
            f, b = fit_per_type(S[keep], m[keep], ridge)
            errs.append(abs(S[i] @ f + b - m[i]) / m[i])
        e = float(np.mean(errs)) if errs else 0.0
        if best is None or e < best[0] - 1e-12:
            best = (e, ridge)
    f, b = fit_per_type(S, m, best[1])
    return f, b, best[1]


def correction_params(kind: str, S: np.ndarray, m: np.ndarray) -> dict[str, Any]:
    """Fit one correction kind on subnets with type sums `S` and measurements `m`."""
    if kind == "none":
        return {"kind": "none", "a": 1.0, "b": 0.0}
    if kind == "affine":
        a, b = fit_affine(S.sum(1), m)
        return {"kind": "affine", "a": a, "b": b}
    if kind == "per_type":
        f, b, ridge = _per_type_with_cv(grouped(S), m)
        by_group = dict(zip(GROUPS, f))
        return {"kind": "per_type", "a": 1.0, "b": b, "ridge": ridge,
                "factors": {t: float(by_group[TIED.get(t, t)]) for t in TYPES}}
    raise ValueError(f"unknown correction kind {kind!r}")


def predict(params: dict[str, Any], S: np.ndarray) -> np.ndarray:
    """Corrected predictions of subnets with type sums `S`."""
    factors = params.get("factors")
    f = np.array([float(factors.get(t, params.get("a", 1.0))) for t in TYPES]) if factors else np.full(len(TYPES), float(params.get("a", 1.0)))
    return S @ f + float(params.get("b", 0.0))


def compare_corrections(rows: list[dict[str, Any]], fit_idx: Sequence[int], test_idx: Sequence[int],
                        key: str = "measured_ms") -> dict[str, Any]:
    """Every correction kind fitted on `fit_idx`, scored on `test_idx`; the one with the lowest held-out MAPE chosen."""
    S = type_matrix(rows)
    m = np.array([r[key] for r in rows], float)
    fit_idx, test_idx = list(fit_idx), list(test_idx)
    out: dict[str, Any] = {}
    for kind in ("none", "affine", "per_type"):
        if kind == "per_type" and not any(r.get("type_sums") for r in rows):
            continue
        params = correction_params(kind, S[fit_idx], m[fit_idx])
        pred = predict(params, S)
        if kind != "none" and (pred <= 0).any():
            log.info("correction %s predicts a non-positive latency for some subnet: not a candidate", kind)
            continue
        out[kind] = {"params": params, "fit": score(pred[fit_idx], m[fit_idx]), "test": score(pred[test_idx], m[test_idx]),
                     "all": score(pred, m)}
    # Lowest held-out MAPE; on a tie the simpler correction (dict order: none, affine, per_type).
    chosen = min(out, key=lambda k: round(out[k]["test"]["mape_pct"], 6))
    return {"candidates": out, "chosen": chosen}


def noise_floor(rows: list[dict[str, Any]], key: str = "measured_ms", retest_key: str = "retest_ms") -> dict[str, Any] | None:
    """Test-retest agreement of subnets measured twice: share within ±10 %, MAPE, worst disagreement."""
    pairs = [(r[key], r[retest_key]) for r in rows if r.get(retest_key) is not None and r.get(key)]
    if not pairs:
        return None
    a, b = np.array(pairs, float).T
    err = np.abs(b - a) / a
    return {"n": len(pairs), "within_10pct": float((err <= 0.10).mean()), "mape_pct": float(100 * err.mean()),
            "max_err_pct": float(100 * err.max()), "kendall_tau": kendall_tau(a, b)}


# ---------------------------------------------------------------- the run

def validate_lut(
    lut_path: str | Path,
    device,
    n_subnets: int = 50,
    *,
    seed: int = 0,
    settings=None,
    workers: int | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    write: bool = True,
    chunk: int = 48,
    retest: int | None = None,
    cache: bool | str | Path | None = True,
) -> dict[str, Any]:
    """Measure `n_subnets` random subnets end to end (and `retest` of them twice, default max(10, n/2)
    capped at n); pick and write the correction and the metrics into the LUT."""
    from easrec.profiling import protocol
    from easrec.profiling.lut import LatencyTable, device_fingerprint

    lut_path = Path(lut_path)
    table = LatencyTable.load(lut_path)
    runtime, dtype = table.device["runtime"], table.device["dtype"]
    threads = int(table.device.get("threads") or 1)
    fp = device_fingerprint(device.info(), runtime, dtype)
    fp["threads"] = threads
    table = LatencyTable.load(lut_path, device_info=fp)
    if n_subnets < 4:
        raise EasrecError(f"--subnets: need at least 4 subnets (half to fit, half to score), got {n_subnets}")
    settings = settings or protocol.Settings(max_seconds=3.0)
    archs = sample_archs(table.space, n_subnets, seed)
    n_retest = min(len(archs), max(10, len(archs) // 2)) if retest is None else min(len(archs), max(0, retest))
    flops = FlopsCostModel(table.space, table.n_items)
    clock = protocol.Clock()
    started = datetime.datetime.now().isoformat(timespec="seconds")
    monitor = protocol.LoadMonitor()
    canary_ref = table.data.get("canary_ref_ms")
    total = len(archs) + n_retest
    done = 0
    if progress:
        progress(0, total, "")
    first: dict[str, Any] = {}
    second: dict[str, Any] = {}
    measuring_s = 0.0
    with protocol.Lowerer(runtime, dtype, workers, cache=cache) as lowerer:
        jobs = [("subnet", a.hash(), (table.space.to_dict(), table.n_items, a.to_dict(), seed)) for a in archs]
        lowered = lowerer.lower_many(jobs, (lambda d, n: progress(0, total, f"lowering {d}/{n}")) if progress else None)
        canary_file = protocol.lower_canary(lowerer)
        monitor.sample()
        for session, (items, store) in enumerate(((lowered, first), (lowered[:n_retest], second))):
            for group in protocol.chunks(items, chunk):
                t0 = protocol.Clock()
                rts = protocol.measure_graphs(device, group, canary_file, threads, settings,
                                              seed=seed + 1000 * session + len(store), monitor=monitor)
                measuring_s += t0.elapsed()
                if canary_ref is None:
                    canary_ref = protocol.canary_median(rts.values())
                for key, _, _ in group:
                    store[key] = (rts[key], protocol.session_record(rts[key], canary_ref, settings))
                    done += 1
                    if progress:
                        progress(done, total, key)
        lowering_s, hits, lowered_n = lowerer.seconds, lowerer.hits, lowerer.lowered
    canary_vals = [c for rt, _ in first.values() for c in rt.canary_ms] + [c for rt, _ in second.values() for c in rt.canary_ms]
    canary: dict[str, Any] = {}
    if canary_vals:
        half = max(1, len(canary_vals) // 4)
        canary = {"start_ms": float(np.median(canary_vals[:half])), "end_ms": float(np.median(canary_vals[-half:])),
                  "reference_ms": canary_ref}
        canary["drift"] = protocol.drift(canary["start_ms"], canary["end_ms"])
        if canary_ref:
            # The canary only partly follows the graphs (a slow phase slows linear attention more than
            # the canary, for one): validation far from the build's machine state is flagged.
            canary["vs_build"] = float(np.median(canary_vals)) / canary_ref - 1.0
            if abs(canary["vs_build"]) > 0.15:
                log.warning("%s: the canary runs %+.0f%% against the build: the machine is in another state than when "
                            "the table was built; rebuilding it now (graphs are cached) makes the comparison fairer",
                            lut_path, 100 * canary["vs_build"])
    rows: list[dict[str, Any]] = []
    for arch in archs:
        _, rec = first[arch.hash()]
        row = {
            "arch": arch.to_dict(), "describe": arch.describe(), "measured_ms": rec["median_ms"],
            "raw_ms": rec["raw_median_ms"], "normalized_ms": rec.get("normalized_median_ms"),
            "p10_ms": rec["p10_ms"], "p90_ms": rec["p90_ms"], "sigma_ms": rec["sigma_ms"],
            "runs": rec["runs"], "lut_sum_ms": table.raw_cost(arch), "type_sums": table.type_sums(arch),
            "mflops": flops.cost(arch), "load_ms": rec.get("load_ms"),
        }
        row["alt"] = rec.get("alt")
        if arch.hash() in second:
            _, rec2 = second[arch.hash()]
            row.update(retest_ms=rec2["median_ms"], retest_raw_ms=rec2["raw_median_ms"],
                       retest_normalized_ms=rec2.get("normalized_median_ms"), retest_alt=rec2.get("alt"))
        rows.append(row)
    result = summarize_rows(rows, seed)
    load = monitor.summary()
    result.update(seed=seed, canary=canary, seconds=clock.elapsed(), protocol=settings.to_dict(), started=started,
                  timing={"lowering_s": lowering_s, "measuring_s": measuring_s, "graphs_lowered": lowered_n,
                          "graphs_from_cache": hits},
                  load_average=load, normalized=bool(settings.normalize and canary_ref))
    if write:
        data = table.data
        chosen = result["corrections"]["candidates"][result["corrections"]["chosen"]]["params"]
        data["correction"] = {**chosen, "fitted_on": len(result["fit_idx"]), "selected_by": "held-out MAPE"}
        data["validation"] = result
        data.setdefault("load_average", {})["validation"] = load
        if data.get("canary_ref_ms") is None and canary_ref is not None:
            data["canary_ref_ms"] = canary_ref
        atomic_write_json(lut_path, data)
    return result


def summarize_rows(rows: list[dict[str, Any]], seed: int = 0) -> dict[str, Any]:
    """Metrics for measured rows (`measured_ms`, `lut_sum_ms`, `mflops`, optional `type_sums`, `retest_ms`):
    corrections compared on held-out subnets, the chosen one as `lut`, FLOPs (affine) for comparison,
    the test-retest noise floor."""
    measured = [r["measured_ms"] for r in rows]
    fit_idx, test_idx = split(len(rows), seed)
    corr = compare_corrections(rows, fit_idx, test_idx)
    chosen = corr["candidates"][corr["chosen"]]
    params = chosen["params"]
    S = type_matrix(rows)
    pred = predict(params, S)
    sums = np.array([r["lut_sum_ms"] for r in rows], float)
    for r, p in zip(rows, pred):
        r["predicted_ms"] = float(p)
    if params["kind"] == "per_type":
        # For plots that draw a·Σ + b: the affine view of the chosen predictions (exact for none/affine).
        a, b = fit_affine(sums, pred)
    else:
        a, b = float(params["a"]), float(params["b"])
    lut = {"kind": params["kind"], "a": a, "b": b, "factors": params.get("factors"), "test": chosen["test"],
           "all": chosen["all"], "fit": chosen["fit"], "raw_all": score(sums, measured), "kendall_tau_all": kendall_tau(sums, measured)}
    floor = noise_floor(rows)
    floor_raw = noise_floor(rows, "raw_ms", "retest_raw_ms")
    floor_norm = noise_floor(rows, "normalized_ms", "retest_normalized_ms")
    # The floor of every statistic the protocol can use, from the same two sessions (which one repeats best).
    floors = {}
    for stat in sorted({k for r in rows for k in (r.get("alt") or {})}):
        pairs = [{"a": r["alt"][stat], "b": r["retest_alt"][stat]} for r in rows
                 if r.get("retest_alt") and r["alt"].get(stat) and r["retest_alt"].get(stat) is not None]
        floors[stat] = noise_floor(pairs, "a", "b")
    result = {
        "n_subnets": len(rows),
        "fit_idx": fit_idx,
        "test_idx": test_idx,
        "lut": lut,
        "corrections": {"chosen": corr["chosen"],
                        "candidates": {k: {"params": v["params"], "test": v["test"], "fit": v["fit"]}
                                       for k, v in corr["candidates"].items()}},
        "flops": evaluate([r["mflops"] for r in rows], measured, fit_idx, test_idx),
        "noise_floor": floor,
        "noise_floor_raw": floor_raw,
        "noise_floor_normalized": floor_norm,
        "noise_floor_by_statistic": floors,
        "subnets": rows,
    }
    if floor and floor["within_10pct"] > 0:
        result["lut_vs_floor"] = lut["test"]["within_10pct"] / floor["within_10pct"]
    return result
