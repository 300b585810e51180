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
    """Rank of the target among `n_neg` negatives drawn by popularity (not the target, not seen)."""
    gen = np.random.default_rng(seed)
    p = popularity.astype(np.float64).copy()
    p[0] = 0.0
    p /= p.sum()
    n = scores.shape[0]
    # Draw extra candidates then keep the first n_neg valid ones per row: vectorised rejection.
    cand = torch.from_numpy(gen.choice(len(p), size=(n, n_neg * 3), p=p))
    bad = (cand == targets.view(-1, 1)) | (cand.unsqueeze(-1) == inputs.unsqueeze(1)).any(-1)
    cand = torch.where(bad, torch.full_like(cand, -1), cand)
    order = torch.argsort((cand < 0).to(torch.int8), dim=1, stable=True)
    neg = cand.gather(1, order)[:, :n_neg]
    neg_scores = torch.where(neg >= 0, scores.gather(1, neg.clamp(min=0)), torch.full(neg.shape, -float("inf"), dtype=scores.dtype))
    t = scores.gather(1, targets.view(-1, 1))
    return (neg_scores >= t).sum(1)
