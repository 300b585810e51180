"""The tensor functions SASRec's blocks are written with, each chosen to train fast and to export whole.

A function exported as ops XNNPACK does not take cuts the lowered graph into more delegates, with a
portable-kernel op and two hand-offs at every cut. Written as `bmm` and `linear`, the attention matmuls
and the linear attention's L2 norms stay inside delegates: the shipped graph runs at 0.6-0.9x the time
it took with `@` and `F.normalize` (benchmarks/README.md, "Attention as delegated ops").
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout; on CPU from a uniform draw, which is 4x faster than `F.dropout`'s bernoulli_."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0:
        return F.dropout(x, p, training)
    # One 16-bit uniform integer per element, cut from 64-bit draws: the generator is called a quarter as
    # often as `rand_like`'s one float per element. Measured (2 threads, [256, 50, 64]): 1.4 ms against
    # 3.0 ms for `rand_like` and 15.6 ms (1 thread) for `F.dropout`. Keep-probability 1 - p is resolved to
    # 1/65536 (exact for p = 0.5).
    n = x.numel()
    words = torch.randint(-(2**63), 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64)
    bits = words.view(torch.int16)[:n].view(x.shape)
    threshold = min(32767, round(p * 65536) - 32768)
    return x * ((bits >= threshold) * (1.0 / (1.0 - p)))


def heads_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a [..., M, K] @ b [..., K, N] with the same leading dims, as one `bmm` over the flattened batch."""
    lead, (m, k), n = a.shape[:-2], a.shape[-2:], b.shape[-1]
    # Why not `a @ b`: exported, it carries an identity expand_copy per operand, which XNNPACK does not
    # delegate; each one cut the graph into another delegate with a portable copy between them.
    return torch.bmm(a.reshape(-1, m, k), b.reshape(-1, k, n)).view(*lead, m, n)


def l2_normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """`F.normalize(x, dim=-1)`, with the sum of squares as a matmul against ones."""
    # Why: F.normalize exports as pow + sum + expand_copy, none of which XNNPACK delegates, so each
    # one cut the linear-attention graph into more delegates; a matmul, clamp and rsqrt are delegated.
    ss = last_dim_sum(x * x)
    return x * torch.rsqrt(ss.clamp_min(eps * eps))


def elu_plus_one(x: torch.Tensor) -> torch.Tensor:
    """`F.elu(x) + 1` (linear attention's feature map), as relu(x) + exp(min(x, 0))."""
    # Why: XNNPACK's partitioner does not take `elu` (its config is disabled in this ExecuTorch), so
    # each one cut the graph; relu, clamp, exp and add are delegated. Equal in value and gradient.
    return F.relu(x) + torch.exp(x.clamp(max=0.0))


def last_dim_sum(x: torch.Tensor) -> torch.Tensor:
    """`x.sum(-1, keepdim=True)`, as a matmul against ones (a reduction XNNPACK does not take)."""
    return F.linear(x, torch.ones(1, x.shape[-1], dtype=x.dtype, device=x.device))


def running_mean(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Causal running mean over the non-padded positions of x [B, L, d] (the gates' view of the history)."""
    counts = torch.cumsum(keep, dim=1).clamp(min=1.0).unsqueeze(-1)
    return torch.cumsum(x, dim=1) / counts


def layer_norm(ln: nn.LayerNorm, x: torch.Tensor, d: int) -> torch.Tensor:
    """LayerNorm over the first d channels with the leading slice of its affine parameters."""
    return F.layer_norm(x, (d,), ln.weight[:d], ln.bias[:d], ln.eps)
