"""Batched, vectorised evaluation of a model on the leave-one-out valid or test split."""

from __future__ import annotations

import logging
from typing import Callable, Literal

import numpy as np
import torch

from easrec.data import Split
from easrec.errors import EasrecError
from easrec.train.metrics import KS, exclude_seen, metrics_from_ranks, sampled_ranks, target_ranks

log = logging.getLogger(__name__)

PROTOCOLS = ("full", "sampled-100")

ScoreFn = Callable[[torch.Tensor], torch.Tensor]


@torch.inference_mode()
def evaluate_scores(
    score_fn: ScoreFn,
    split: Split,
    which: Literal["valid", "test"],
    max_len: int,
    *,
    keep_seen: bool = False,
    protocol: str = "full",
    popularity: np.ndarray | None = None,
    batch_size: int = 512,
    ks: tuple[int, ...] = KS,
) -> dict[str, float]:
    """HR/NDCG/MRR@k of `score_fn(ids [B, L]) -> scores [B, N+1]` on every evaluated user."""
    if protocol not in PROTOCOLS:
        raise EasrecError(f"--protocol must be one of {PROTOCOLS}, got {protocol!r}")
    inputs, targets = split.eval_arrays(which, max_len)
    inputs_t = torch.from_numpy(inputs)
    targets_t = torch.from_numpy(targets)
    lengths = (inputs_t != 0).sum(1)
    # Users sorted by history length, so each batch can drop its all-padding columns: positions count
    # back from the newest item, so scores are unchanged and short histories cost less.
    order = torch.argsort(lengths, stable=True)
    ranks = torch.empty(len(inputs), dtype=torch.long)
    for start in range(0, len(inputs), batch_size):
        idx = order[start : start + batch_size]
        width = max(1, int(lengths[idx].max()))
        x = inputs_t[idx, -width:]
        t = targets_t[idx]
        scores = score_fn(x).float().clone()
        if protocol == "full":
            if not keep_seen:
                exclude_seen(scores, x)
            else:
                scores[:, 0] = -1e4
            ranks[idx] = target_ranks(scores, t)
        else:
            if popularity is None:
                raise EasrecError("the sampled-100 protocol needs item popularity")
            ranks[idx] = sampled_ranks(scores, t, x, popularity, seed=start)
    if len(inputs) == 0:
        raise EasrecError("no user has enough interactions (3) to be evaluated")
    return metrics_from_ranks(ranks, ks)


def evaluate_model(model, split: Split, which: Literal["valid", "test"], *, active=None, **kwargs) -> dict[str, float]:
    """Evaluate a SASRec (optionally as the subnet `active` of a supernet) on a split."""
    arch = active or model.arch
    was_training = model.training
    model.eval()
    try:
        return evaluate_scores(
            lambda x: model.score(model.encode(x, active, last_only=True), active), split, which, arch.max_len, **kwargs
        )
    finally:
        model.train(was_training)
