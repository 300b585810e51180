"""Parity of an exported artifact with the eager model on real test sequences.

Both sides answer the same question (top-k of the catalogue, items in the history excluded): the
artifact in its own runtime (ExecuTorch or ONNX Runtime) through `Predictor.run_ids`, the eager
model through `TopKGraph.scores` in torch. Reported: max abs score difference (artifact scores vs
eager scores of the same items), mean top-k overlap, and HR@10 / NDCG@10 of both computed from
their top-k lists. An int8 artifact whose NDCG@10 is more than `tolerance` (relative) below the
fp32 eager model fails; an fp32 artifact fails on a score difference ≥ 1e-3 or overlap < 0.99.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from easrec.export.graph import TopKGraph
from easrec.train.metrics import metrics_from_ranks

log = logging.getLogger(__name__)

NDCG_TOLERANCE = 0.02
FP32_MAX_DIFF = 1e-3
FP32_MIN_OVERLAP = 0.99


def eager_scores(model: torch.nn.Module, inputs: np.ndarray, chunk: int = 256, exclude_seen: bool = True) -> np.ndarray:
    """Eager catalogue scores [n, N+1] of the export graph (seen items and padding at NEG)."""
    graph = TopKGraph(model, k=1, exclude_seen=exclude_seen).eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(inputs), chunk):
            out.append(graph.scores(torch.from_numpy(np.ascontiguousarray(inputs[start : start + chunk]))).numpy())
    return np.concatenate(out) if out else np.zeros((0, model.n_items + 1), np.float32)


def topk_ranks(items: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based rank of each target in its top-k row; k (a miss) where absent."""
    k = items.shape[1]
    hit = items == targets.reshape(-1, 1)
    return np.where(hit.any(1), hit.argmax(1), k)


def topk_metrics(items: np.ndarray, targets: np.ndarray, at: int = 10) -> dict[str, float]:
    at = min(at, items.shape[1])
    m = metrics_from_ranks(topk_ranks(items[:, :at], targets), ks=(at,))
    return {key: float(v) for key, v in m.items()}


def check_parity(
    model: torch.nn.Module,
    artifact: str | Path,
    inputs: np.ndarray,
    targets: np.ndarray,
    *,
    quantize: str = "none",
    tolerance: float = NDCG_TOLERANCE,
    threads: int = 1,
    eager: np.ndarray | None = None,
    exclude_seen: bool = True,
) -> dict[str, Any]:
    """Run the artifact (with its sidecar) on `inputs` and compare with eager; returns a JSON-able dict."""
    from easrec.export.artifact import Predictor

    predictor = Predictor(artifact, threads=threads)
    k = predictor.k
    at = min(10, k)
    inputs = np.asarray(inputs, dtype=np.int64)[:, -predictor.max_len :]
    targets = np.asarray(targets, dtype=np.int64)
    art_items, art_scores = predictor.run_ids(inputs)
    full = eager_scores(model, inputs, exclude_seen=exclude_seen) if eager is None else eager
    eager_items = np.argsort(-full, axis=1, kind="stable")[:, :k]
    diff = float(np.abs(np.take_along_axis(full, art_items, 1) - art_scores).max()) if len(inputs) else 0.0
    overlap = float(np.mean([len(set(a[:at]) & set(e[:at])) / at for a, e in zip(art_items, eager_items)])) if len(inputs) else 1.0
    m_art = topk_metrics(art_items, targets, at)
    m_eager = topk_metrics(eager_items, targets, at)
    ndcg_key, hr_key = f"ndcg@{at}", f"hr@{at}"
    drop = (m_eager[ndcg_key] - m_art[ndcg_key]) / m_eager[ndcg_key] if m_eager[ndcg_key] > 0 else 0.0
    if quantize == "none":
        passed = diff < FP32_MAX_DIFF and overlap >= FP32_MIN_OVERLAP
        reason = "" if passed else f"fp32 artifact differs from eager (max diff {diff:.3g}, top-{at} overlap {overlap:.3f})"
    else:
        passed = drop <= tolerance
        reason = "" if passed else (
            f"{quantize} NDCG@{at} {m_art[ndcg_key]:.4f} is {drop:.1%} below fp32 eager {m_eager[ndcg_key]:.4f} "
            f"(tolerance {tolerance:.0%})"
        )
    result = {
        "artifact": str(artifact),
        "runtime": predictor.runtime,
        "quantize": quantize,
        "users": int(len(inputs)),
        "max_abs_diff": diff,
        f"top{at}_overlap": overlap,
        "artifact_metrics": {ndcg_key: m_art[ndcg_key], hr_key: m_art[hr_key]},
        "eager_metrics": {ndcg_key: m_eager[ndcg_key], hr_key: m_eager[hr_key]},
        "ndcg_relative_drop": float(drop),
        "tolerance": tolerance,
        "passed": bool(passed),
        "reason": reason,
    }
    log.info(
        "parity %s: max diff %.3g, top-%d overlap %.3f, NDCG@%d %.4f vs eager %.4f (%s)",
        Path(artifact).name, diff, at, overlap, at, m_art[ndcg_key], m_eager[ndcg_key], "ok" if passed else "FAIL",
    )
    return result
