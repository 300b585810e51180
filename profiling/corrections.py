"""Per-device corrections of a latency table, fitted on measured subnets: none, affine, per component type.

- `none`: the sum of the entries;
- `affine`: one global `a · Σ entries + b`;
- `affine_blocks`: `a · Σ entries + b + c · blocks`. Blocks measured in context still leave a cost
  per block that the entries do not sum to, of either sign (ONNX Runtime's affine residuals on the
  default space rise from 0.94× at one block to 1.04× at four). `c` is paid once per block, on its
  attention component, so the prediction stays exactly additive;
- `per_type`: one non-negative factor per component type plus an intercept, ridge-regularised
  towards 1 (`fit_per_type`): measured ≈ Σ_type f_type · Σ entries of that type + b; gates share
  their FFN's factor (`TIED`).
`cross_validate_corrections` scores each kind by k-fold cross-validation, so every measured subnet is
predicted once by a fit that did not see it, keeps the kind with the lowest cross-validated MAPE and
fits it on all subnets; `compare_corrections` is the older single split (fit on half, score the other).
Why: on the ExecuTorch int8 default-space table's 50 stored subnets, 20 random halves gave the chosen
kind's share within ±10 % anywhere from 80 % to 100 % (four kinds chosen); 20 five-fold assignments gave
88–96 % (benchmarks/lut_crossval.py). Five folds also fit the stored correction on all the data.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
from scipy.optimize import lsq_linear

from easrec.cost import COMPONENT_FIELDS
from easrec.profiling.scores import fit_affine, score

log = logging.getLogger(__name__)

TYPES = tuple(COMPONENT_FIELDS)
KINDS = ("none", "affine", "affine_blocks", "per_type")  # simplest first: a tie on held-out MAPE keeps the simpler
RIDGES = (0.001, 0.01, 0.1, 1.0)
# Gates share their FFN's factor: in a gated space every sampled subnet has both, so a separate factor is
# not identified (a fit once set gates to 0 and FFN to 1.23, which would over-predict every ungated model,
# the budget's reference SASRec among them).
TIED = {"gates": "ffn", "last_gates": "last_ffn"}
GROUPS = tuple(t for t in TYPES if t not in TIED)


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


def block_counts(rows: list[dict[str, Any]]) -> np.ndarray | None:
    """Blocks (layers) of each measured subnet, from its `arch`; None when a row has no architecture."""
    if not all(isinstance(r.get("arch"), dict) and "layers" in r["arch"] for r in rows):
        return None
    return np.array([len(r["arch"]["layers"]) for r in rows], float)


def fit_affine_blocks(total: np.ndarray, blocks: np.ndarray, m: np.ndarray) -> tuple[float, float, float] | None:
    """(a, b, c) minimising Σ ((a·total + b + c·blocks − m)/m)²; None when a ≤ 0 or the fit is degenerate."""
    w = 1.0 / np.maximum(m, 1e-9)
    A = np.stack([total * w, w, blocks * w], axis=1)
    if np.linalg.matrix_rank(A) < 3:
        return None
    sol, *_ = np.linalg.lstsq(A, np.ones_like(m), rcond=None)
    a, b, c = (float(x) for x in sol)
    return (a, b, c) if np.isfinite(sol).all() and a > 0 else None


def correction_params(kind: str, S: np.ndarray, m: np.ndarray, blocks: np.ndarray | None = None) -> dict[str, Any] | None:
    """Fit one correction kind on subnets with type sums `S`, measurements `m` and block counts `blocks`.

    None when the kind cannot be fitted on these subnets (`affine_blocks` without block counts, or
    with every subnet of one depth).
    """
    if kind == "none":
        return {"kind": "none", "a": 1.0, "b": 0.0}
    if kind == "affine":
        a, b = fit_affine(S.sum(1), m)
        return {"kind": "affine", "a": a, "b": b}
    if kind == "affine_blocks":
        fitted = None if blocks is None else fit_affine_blocks(S.sum(1), blocks, m)
        if fitted is None:
            return None
        a, b, c = fitted
        return {"kind": "affine_blocks", "a": a, "b": b, "per_block": c}
    if kind == "per_type":
        f, b, ridge = _per_type_with_cv(grouped(S), m)
        by_group = dict(zip(GROUPS, f))
        return {"kind": "per_type", "a": 1.0, "b": b, "ridge": ridge,
                "factors": {t: float(by_group[TIED.get(t, t)]) for t in TYPES}}
    raise ValueError(f"unknown correction kind {kind!r}")


def predict(params: dict[str, Any], S: np.ndarray, blocks: np.ndarray | None = None) -> np.ndarray:
    """Corrected predictions of subnets with type sums `S` (and `blocks`, for `affine_blocks`)."""
    factors = params.get("factors")
    f = np.array([float(factors.get(t, params.get("a", 1.0))) for t in TYPES]) if factors else np.full(len(TYPES), float(params.get("a", 1.0)))
    out = S @ f + float(params.get("b", 0.0))
    if params.get("per_block"):
        if blocks is None:
            raise ValueError("an affine_blocks correction needs the subnets' block counts")
        out = out + float(params["per_block"]) * np.asarray(blocks, float)
    return out


def compare_corrections(rows: list[dict[str, Any]], fit_idx: Sequence[int], test_idx: Sequence[int],
                        key: str = "measured_ms") -> dict[str, Any]:
    """Every correction kind fitted on `fit_idx`, scored on `test_idx`; the one with the lowest held-out MAPE chosen."""
    S = type_matrix(rows)
    m = np.array([r[key] for r in rows], float)
    blocks = block_counts(rows)
    fit_idx, test_idx = list(fit_idx), list(test_idx)
    out: dict[str, Any] = {}
    for kind in KINDS:
        if kind == "per_type" and not any(r.get("type_sums") for r in rows):
            continue
        params = correction_params(kind, S[fit_idx], m[fit_idx], None if blocks is None else blocks[fit_idx])
        if params is None:
            continue
        pred = predict(params, S, blocks)
        if kind != "none" and (pred <= 0).any():
            log.info("correction %s predicts a non-positive latency for some subnet: not a candidate", kind)
            continue
        out[kind] = {"params": params, "fit": score(pred[fit_idx], m[fit_idx]), "test": score(pred[test_idx], m[test_idx]),
                     "all": score(pred, m)}
    # Lowest held-out MAPE; on a tie the simpler correction (KINDS order).
    chosen = min(out, key=lambda k: round(out[k]["test"]["mape_pct"], 6))
    return {"candidates": out, "chosen": chosen}


def cross_validate_corrections(rows: list[dict[str, Any]], fold_list: Sequence[Sequence[int]],
                               key: str = "measured_ms") -> dict[str, Any]:
    """Every correction kind scored out of fold (`test`: each subnet predicted by a fit on the other folds),
    then fitted on all subnets (`params`, `fit`); the kind with the lowest cross-validated MAPE is `chosen`.

    A kind that cannot be fitted on some fold, or predicts a non-positive latency, is not a candidate.
    """
    S = type_matrix(rows)
    m = np.array([r[key] for r in rows], float)
    blocks = block_counts(rows)
    n = len(rows)
    out: dict[str, Any] = {}
    for kind in KINDS:
        if kind == "per_type" and not any(r.get("type_sums") for r in rows):
            continue
        out_of_fold = np.empty(n)
        usable = True
        for fold in fold_list:
            fold = list(fold)
            rest = [i for i in range(n) if i not in set(fold)]
            params = correction_params(kind, S[rest], m[rest], None if blocks is None else blocks[rest])
            if params is None:
                usable = False
                break
            out_of_fold[fold] = predict(params, S[fold], None if blocks is None else blocks[fold])
        params = correction_params(kind, S, m, blocks) if usable else None
        if params is None:
            continue
        pred = predict(params, S, blocks)
        if kind != "none" and ((pred <= 0).any() or (out_of_fold <= 0).any()):
            log.info("correction %s predicts a non-positive latency for some subnet: not a candidate", kind)
            continue
        out[kind] = {"params": params, "fit": score(pred, m), "test": score(out_of_fold, m), "all": score(pred, m),
                     "out_of_fold_ms": [float(x) for x in out_of_fold]}
    chosen = min(out, key=lambda k: round(out[k]["test"]["mape_pct"], 6))
    return {"candidates": out, "chosen": chosen}
