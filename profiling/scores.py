"""How well predicted latencies match measured ones: Kendall τ, share within ±10 %, MAPE, the noise floor."""

from __future__ import annotations

import random
from typing import Any, Sequence

import numpy as np


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


def folds(n: int, k: int = 5, seed: int = 0) -> list[list[int]]:
    """`k` random folds of range(n) of near-equal size (k capped at n), for cross-validation."""
    idx = list(range(n))
    random.Random(seed + 1).shuffle(idx)
    k = max(1, min(k, n))
    return [sorted(idx[i::k]) for i in range(k)]


def evaluate_cv(pred: Sequence[float], measured: Sequence[float], fold_list: Sequence[Sequence[int]]) -> dict[str, Any]:
    """The affine correction cross-validated: each fold predicted by a fit on the others (`test`), and fitted on all."""
    p, m = np.asarray(pred, float), np.asarray(measured, float)
    out_of_fold = np.empty_like(m)
    for fold in fold_list:
        rest = np.setdiff1d(np.arange(len(m)), fold)
        a, b = fit_affine(p[rest], m[rest])
        out_of_fold[list(fold)] = a * p[list(fold)] + b
    a, b = fit_affine(p, m)
    return {"a": a, "b": b, "test": score(out_of_fold, m), "all": score(a * p + b, m), "raw_all": score(p, m),
            "kendall_tau_all": kendall_tau(p, m)}


def noise_floor(rows: list[dict[str, Any]], key: str = "measured_ms", retest_key: str = "retest_ms") -> dict[str, Any] | None:
    """Test-retest agreement of subnets measured twice: share within ±10 %, MAPE, worst disagreement."""
    pairs = [(r[key], r[retest_key]) for r in rows if r.get(retest_key) is not None and r.get(key)]
    if not pairs:
        return None
    a, b = np.array(pairs, float).T
    err = np.abs(b - a) / a
    return {"n": len(pairs), "within_10pct": float((err <= 0.10).mean()), "mape_pct": float(100 * err.mean()),
            "max_err_pct": float(100 * err.max()), "kendall_tau": kendall_tau(a, b)}
