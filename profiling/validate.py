"""End-to-end validation of a latency table: random whole subnets measured vs the LUT's prediction.

N random subnets of the table's space are extracted from a supernet (`Supernet.extract`), wrapped in
the shipped graph (`TopKGraph`: ids → top-k), lowered with the table's runtime and dtype, and
measured on the device. A per-device affine correction `measured ≈ a · Σ entries + b` is fitted on
half of them (least squares on relative error) and scored on the other half: share within ±10 %,
MAPE, Kendall τ. The analytic FLOPs model gets the same treatment on the same subnets, for comparison.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from easrec.cost.flops import FlopsCostModel
from easrec.errors import EasrecError, atomic_write_json
from easrec.space import Arch

log = logging.getLogger(__name__)

_SUPERNETS: dict[tuple, Any] = {}


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
    chunk: int = 16,
) -> dict[str, Any]:
    """Measure `n_subnets` random subnets end to end; write the correction and the metrics into the LUT."""
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
    flops = FlopsCostModel(table.space, table.n_items)
    rows: list[dict[str, Any]] = []
    clock = protocol.Clock()
    if progress:
        progress(0, len(archs), "")
    with protocol.Lowerer(runtime, dtype, workers) as lowerer:
        canary = {"start_ms": protocol.measure_canary(device, lowerer, threads, settings)}
        for group in protocol.chunks(archs, chunk):
            jobs = [("subnet", a.hash(), (table.space.to_dict(), table.n_items, a.to_dict(), seed)) for a in group]
            for arch, (_, path, inputs) in zip(group, lowerer.lower_many(jobs)):
                stats = protocol.measure(device, Path(path), inputs, threads, settings)
                Path(path).unlink(missing_ok=True)
                rows.append({
                    "arch": arch.to_dict(), "describe": arch.describe(), "measured_ms": stats.median_ms,
                    "p10_ms": stats.p10_ms, "p90_ms": stats.p90_ms, "runs": stats.runs,
                    "lut_sum_ms": table.raw_cost(arch), "mflops": flops.cost(arch),
                })
                if progress:
                    progress(len(rows), len(archs), arch.describe())
        canary["end_ms"] = protocol.measure_canary(device, lowerer, threads, settings)
        canary["drift"] = protocol.drift(canary["start_ms"], canary["end_ms"])
    result = summarize_rows(rows, seed)
    result.update(seed=seed, canary=canary, seconds=clock.elapsed(), protocol=settings.to_dict())
    if write:
        data = table.data
        data["correction"] = {"a": result["lut"]["a"], "b": result["lut"]["b"], "fitted_on": len(result["fit_idx"])}
        data["validation"] = result
        atomic_write_json(lut_path, data)
    return result


def summarize_rows(rows: list[dict[str, Any]], seed: int = 0) -> dict[str, Any]:
    """Metrics for measured rows (`measured_ms`, `lut_sum_ms`, `mflops`): LUT vs FLOPs, fit/test halves."""
    measured = [r["measured_ms"] for r in rows]
    fit_idx, test_idx = split(len(rows), seed)
    return {
        "n_subnets": len(rows),
        "fit_idx": fit_idx,
        "test_idx": test_idx,
        "lut": evaluate([r["lut_sum_ms"] for r in rows], measured, fit_idx, test_idx),
        "flops": evaluate([r["mflops"] for r in rows], measured, fit_idx, test_idx),
        "subnets": rows,
    }
