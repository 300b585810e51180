"""Full-ranking (and sampled) top-k metrics on the leave-one-out target: HR, NDCG, MRR @ k."""

from __future__ import annotations

import numpy as np
import torch

from easrec.model import NEG

KS = (5, 10, 20)


def exclude_seen(scores: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """Set the score of every item in the user's input sequence (and padding) to NEG, in place."""
    scores.scatter_(1, inputs, NEG)
    scores[:, 0] = NEG
    return scores


def batch_history(flat: np.ndarray, offsets: np.ndarray, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(batch row, item id) pairs of every item in the CSR histories of `rows`: two int64 tensors of equal length."""
    rows = np.asarray(rows, dtype=np.int64)
    starts = offsets[rows]
    lengths = offsets[rows + 1] - starts
    total = int(lengths.sum())
    batch_row = np.repeat(np.arange(len(rows)), lengths)
    # Position inside each user's segment: 0..length-1, without a Python loop over users.
    within = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    items = flat[np.repeat(starts, lengths) + within]
    return torch.from_numpy(batch_row), torch.from_numpy(items)


def exclude_history(scores: torch.Tensor, flat: np.ndarray, offsets: np.ndarray, rows: np.ndarray) -> torch.Tensor:
    """Set the score of every item in each row's whole CSR history (and padding) to NEG, in place."""
    batch_row, items = batch_history(flat, offsets, rows)
    scores.index_put_((batch_row, items), torch.tensor(NEG, dtype=scores.dtype))
    scores[:, 0] = NEG
    return scores


def target_ranks(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """0-based rank of each target among all scored items (ties count against the target)."""
    target_score = scores.gather(1, targets.view(-1, 1))
    return (scores >= target_score).sum(1) - 1


def metrics_from_ranks(ranks: np.ndarray | torch.Tensor, ks: tuple[int, ...] = KS) -> dict[str, float]:
    """HR@k, NDCG@k and MRR@k averaged over users from 0-based ranks."""
    r = torch.as_tensor(ranks, dtype=torch.float64)
    out: dict[str, float] = {}
    for k in ks:
        hit = r < k
        out[f"hr@{k}"] = hit.double().mean().item()
        out[f"ndcg@{k}"] = torch.where(hit, 1.0 / torch.log2(r + 2.0), torch.zeros_like(r)).mean().item()
        out[f"mrr@{k}"] = torch.where(hit, 1.0 / (r + 1.0), torch.zeros_like(r)).mean().item()
    return out


def sampled_ranks(
    scores: torch.Tensor, targets: torch.Tensor, inputs: torch.Tensor, popularity: np.ndarray, n_neg: int = 100, seed: int = 0
) -> torch.Tensor:
    """Rank of the target among `n_neg` negatives drawn by popularity (not the target, not seen).

    `inputs` [B, any width] holds each row's seen items (0 = padding): the model window or the whole
    history, padded.
    """
    n, width = scores.shape
    seen = torch.zeros(n, width, dtype=torch.bool)
    seen.scatter_(1, inputs, True)
    return _sampled_ranks(scores, targets, seen, popularity, n_neg, seed)


def sampled_ranks_history(
    scores: torch.Tensor, targets: torch.Tensor, flat: np.ndarray, offsets: np.ndarray, rows: np.ndarray,
    popularity: np.ndarray, n_neg: int = 100, seed: int = 0,
) -> torch.Tensor:
    """`sampled_ranks` with the seen items taken from each row's whole CSR history."""
    seen = torch.zeros(scores.shape, dtype=torch.bool)
    seen.index_put_(batch_history(flat, offsets, rows), torch.tensor(True))
    return _sampled_ranks(scores, targets, seen, popularity, n_neg, seed)


def _sampled_ranks(
    scores: torch.Tensor, targets: torch.Tensor, seen: torch.Tensor, popularity: np.ndarray, n_neg: int, seed: int
) -> torch.Tensor:
    gen = np.random.default_rng(seed)
    p = popularity.astype(np.float64).copy()
    p[0] = 0.0
    p /= p.sum()
    n = scores.shape[0]
    # Draw extra candidates then keep the first n_neg valid ones per row: vectorised rejection.
    cand = torch.from_numpy(gen.choice(len(p), size=(n, n_neg * 3), p=p))
    bad = (cand == targets.view(-1, 1)) | seen.gather(1, cand)
    cand = torch.where(bad, torch.full_like(cand, -1), cand)
    order = torch.argsort((cand < 0).to(torch.int8), dim=1, stable=True)
    neg = cand.gather(1, order)[:, :n_neg]
    neg_scores = torch.where(neg >= 0, scores.gather(1, neg.clamp(min=0)), torch.full(neg.shape, -float("inf"), dtype=scores.dtype))
    t = scores.gather(1, targets.view(-1, 1))
    return (neg_scores >= t).sum(1)


def per_user_metrics(ranks: np.ndarray | torch.Tensor, ks: tuple[int, ...] = KS) -> dict[str, np.ndarray]:
    """HR@k, NDCG@k and MRR@k of every user (float64 arrays) from 0-based ranks."""
    r = np.asarray(torch.as_tensor(ranks).numpy() if isinstance(ranks, torch.Tensor) else ranks, dtype=np.float64)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        hit = r < k
        out[f"hr@{k}"] = hit.astype(np.float64)
        out[f"ndcg@{k}"] = np.where(hit, 1.0 / np.log2(r + 2.0), 0.0)
        out[f"mrr@{k}"] = np.where(hit, 1.0 / (r + 1.0), 0.0)
    return out
