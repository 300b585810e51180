"""The graph every artifact ships: item ids [B, L] int64 → (top-k item indices [B, k] int64, scores [B, k]).

Only the newest position is computed in the final block (`SASRec.encode(..., last_only=True)`); the
catalogue scores are `F.linear(h, item_table, bias)` where the bias carries NEG at the padding index,
so scoring is one linear layer XNNPACK delegates (and PT2E quantizes). Items already in the input
history are excluded in the graph with one `scatter` of NEG at the input ids: it runs on a portable
CPU kernel between the delegated parts, costs one write per input position (`scatter.src_out`, about
2 µs at L 200 in an ETDump profile of the reference .pte), and keeps the device code trivial.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from easrec.model import NEG, SASRec


class TopKGraph(nn.Module):
    """Wraps a SASRec for export: ids [B, L] → (indices [B, k] int64, scores [B, k] float32)."""

    def __init__(self, model: SASRec, k: int = 10, exclude_seen: bool = True):
        super().__init__()
        if k < 1 or k > model.n_items:
            raise ValueError(f"k must be in 1..{model.n_items} (the catalogue size), got {k}")
        # A frozen copy: export folds the weights into constants and must not touch the caller's model.
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.k = int(k)
        self.exclude_seen = bool(exclude_seen)
        self.register_buffer("pad_index", torch.zeros(1, dtype=torch.long), persistent=False)

    @property
    def max_len(self) -> int:
        return self.model.arch.max_len

    def scores(self, ids: torch.Tensor) -> torch.Tensor:
        """All catalogue scores [B, N+1] (padding and, with exclude_seen, the input items at NEG)."""
        h = self.model.encode(ids, last_only=True)
        s = F.linear(h, self.model.item_weights()).index_fill(1, self.pad_index, NEG)
        if self.exclude_seen:
            # full_like follows the input's device: a saved .pt2 also runs after being moved to CUDA.
            s = s.scatter(1, ids, torch.full_like(ids, NEG, dtype=s.dtype))
        return s

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        values, indices = torch.topk(self.scores(ids), self.k, dim=1)
        return indices, values


def example_inputs(max_len: int, batch: int = 1, sample: "torch.Tensor | None" = None) -> tuple[torch.Tensor]:
    """Example ids for torch.export: real sequences when given (padding included), else a padded ramp."""
    if sample is not None:
        ids = torch.as_tensor(sample, dtype=torch.long)[:batch, -max_len:]
        if ids.shape[0] == batch and ids.shape[1] == max_len:
            return (ids.contiguous(),)
    ids = torch.zeros(batch, max_len, dtype=torch.long)
    n = max(1, max_len // 2)
    ids[:, -n:] = torch.arange(1, n + 1)
    return (ids,)
