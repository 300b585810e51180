"""SASRec, written so that any leading slice of it is itself a SASRec.

One implementation of every block serves three uses: the plain model that `easrec train` fits, the
weight-sharing supernet (the same modules at their largest size, run with an active `Arch` that
slices their weights), and the modules the profiler measures. Attention is written by hand
(`q @ kᵀ * scale + additive mask`) because `nn.TransformerEncoderLayer` does not `torch.export`
and SDPA with a mask lowers to ops XNNPACK will not take; the tensor functions it is written with,
chosen so that export delegates them whole, are in `easrec.model.functional`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from easrec.model.functional import dropout, elu_plus_one, heads_matmul, l2_normalize, layer_norm, running_mean
from easrec.space import Arch

NEG = -1e4  # additive mask value: large but finite so fully padded rows do not become NaN
# Measured on ml-100k (benchmarks/README.md, SASRec defaults): 0.5 validates better than 0.2, as in RecBole.
DEFAULT_DROPOUT = 0.5


@dataclass
class SoftChoice:
    """Relaxed choices for the differentiable (DARTS-style) search, all optional.

    `head_weights[i]` / `ffn_weights[i]` scale head j / neuron j of layer i by the probability that
    the layer keeps it (a cumulative sum over the candidate widths), so one forward pass computes the
    expectation over widths. `depth_weights[k]` mixes the hidden state after k+1 blocks.
    """

    head_weights: list[torch.Tensor] | None = None
    ffn_weights: list[torch.Tensor] | None = None
    depth_weights: torch.Tensor | None = None


class Dropout(nn.Module):
    """`dropout` as a module (no parameters: state dicts are unchanged)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


class Gate(nn.Module):
    """EASRec's data-aware gate: g(X) = γ · sigmoid(W2 relu(W1 X + b1) + b2), γ = 2."""

    def __init__(self, d_in: int, d_out: int, hidden: int = 16, gamma: float = 2.0):
        super().__init__()
        self.fc1 = nn.Linear(d_in, hidden)
        self.fc2 = nn.Linear(hidden, d_out)
        self.gamma = gamma
        # b2 = 0, W2 small: the gate starts at γ·sigmoid(0) = 1, i.e. as the identity.
        nn.init.zeros_(self.fc2.bias)
        nn.init.normal_(self.fc2.weight, std=0.01)

    def forward(self, summary: torch.Tensor, d_in: int, d_out: int) -> torch.Tensor:
        h = F.relu(F.linear(summary, self.fc1.weight[:, :d_in], self.fc1.bias))
        return self.gamma * torch.sigmoid(F.linear(h, self.fc2.weight[:d_out], self.fc2.bias[:d_out]))


class Attention(nn.Module):
    """Multi-head causal self-attention with heads of fixed size; softmax or linear (ELU+1, L2-normalised)."""

    def __init__(self, d: int, heads: int, head_size: int, dropout: float = 0.0):
        super().__init__()
        self.head_size = head_size
        self.dropout = dropout  # on the softmax attention probabilities while training, as in RecBole
        inner = heads * head_size
        self.q = nn.Linear(d, inner)
        self.k = nn.Linear(d, inner)
        self.v = nn.Linear(d, inner)
        self.o = nn.Linear(inner, d)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        keep: torch.Tensor,
        *,
        d: int,
        heads: int,
        kind: str,
        last_only: bool = False,
        head_weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x [B, L, d] → [B, L, d] (or [B, 1, d] with `last_only`: only the newest position is queried)."""
        B, L, _ = x.shape
        hs = self.head_size
        inner = heads * hs

        def proj(layer: nn.Linear, inp: torch.Tensor) -> torch.Tensor:
            y = F.linear(inp, layer.weight[:inner, :d], layer.bias[:inner])
            return y.view(B, inp.shape[1], heads, hs).transpose(1, 2)  # [B, H, L, hs]

        xq = x[:, -1:] if last_only else x
        q, k, v = proj(self.q, xq), proj(self.k, x), proj(self.v, x)
        if kind == "softmax":
            att = heads_matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(hs)) + mask
            y = heads_matmul(dropout(att.softmax(dim=-1), self.dropout, self.training), v)
        else:
            fq = l2_normalize(elu_plus_one(q))
            fk = l2_normalize(elu_plus_one(k)) * keep.view(B, 1, L, 1)
            if self.training:
                # The causal sums in their quadratic masked form: matmuls train ~3x faster than the
                # cumulative sums over [B, H, L, hs, hs] below, whose backward is memory-bound.
                scores = heads_matmul(fq, fk.transpose(-1, -2)) * torch.ones(L, L, dtype=x.dtype, device=x.device).tril()
                y = heads_matmul(scores, v) / (scores.sum(-1, keepdim=True) + 1e-6)
            else:
                # A column of ones after v: one matmul then gives the numerator and the denominator,
                # and the causal path needs one running sum instead of two.
                v1 = torch.cat([v, torch.ones(B, heads, L, 1, dtype=x.dtype, device=x.device)], dim=-1)
                if last_only:
                    state = heads_matmul(fk.transpose(-1, -2), v1)  # [B, H, hs, hs+1]: the whole history
                    nd = heads_matmul(fq, state)
                else:
                    # Outer products as a bmm (a 5-D broadcast multiply is not delegated), then running sums, O(L).
                    outer = torch.bmm(fk.reshape(-1, hs, 1), v1.reshape(-1, 1, hs + 1)).view(B, heads, L, hs * (hs + 1))
                    state = torch.cumsum(outer, dim=2)
                    nd = torch.bmm(fq.reshape(-1, 1, hs), state.view(-1, hs, hs + 1)).view(B, heads, L, hs + 1)
                y = nd[..., :hs] / (nd[..., hs:] + 1e-6)
        if head_weights is not None:
            y = y * head_weights[:heads].view(1, heads, 1, 1)
        y = y.transpose(1, 2).reshape(B, xq.shape[1], inner)
        return F.linear(y, self.o.weight[:d, :inner], self.o.bias[:d])


class FeedForward(nn.Module):
    """Position-wise FFN, optionally scaled by the data-aware gates (inner activation and output)."""

    def __init__(self, d: int, ffn: int):
        super().__init__()
        self.fc1 = nn.Linear(d, ffn)
        self.fc2 = nn.Linear(ffn, d)

    def forward(
        self,
        x: torch.Tensor,
        *,
        d: int,
        ffn: int,
        gate_inner: torch.Tensor | None = None,
        gate_out: torch.Tensor | None = None,
        ffn_weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        h = F.gelu(F.linear(x, self.fc1.weight[:ffn, :d], self.fc1.bias[:ffn]))
        if gate_inner is not None:
            h = h * gate_inner
        if ffn_weights is not None:
            h = h * ffn_weights[:ffn]
        y = F.linear(h, self.fc2.weight[:d, :ffn], self.fc2.bias[:d])
        if gate_out is not None:
            y = y * gate_out
        return y


class Block(nn.Module):
    """Post-LN transformer block (SASRec's and RecBole's): ln(x + attn(x)), then ln(x + ffn(x)) with optional gates."""

    def __init__(self, d: int, heads: int, head_size: int, ffn: int, gates: bool, attn_dropout: float = 0.0):
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = Attention(d, heads, head_size, attn_dropout)
        self.ln2 = nn.LayerNorm(d)
        self.ffn = FeedForward(d, ffn)
        self.gate_inner = Gate(d, ffn) if gates else None
        self.gate_out = Gate(d, d) if gates else None


class SASRec(nn.Module):
    """SASRec (Kang & McAuley 2018) as RecBole builds it, positions counted from the newest item.

    LayerNorm(item + position) input, post-LN blocks, dropout on hidden states and attention probabilities,
    N(0, 0.02) initialisation, output embedding tied to the input one. Measured against the pre-LN variant
    (√d-scaled input, final LN) on ml-100k: benchmarks/README.md, "SASRec on ml-100k".

    Built at the size of `arch`; `encode(..., active=smaller_arch)` runs a leading slice of it, which is
    how the supernet (`easrec.model.supernet.Supernet`) shares weights.
    """

    def __init__(self, arch: Arch, n_items: int, dropout: float = DEFAULT_DROPOUT):
        super().__init__()
        self.arch = arch
        self.n_items = n_items
        self.dropout = dropout
        self.item_emb = nn.Embedding(n_items + 1, arch.d, padding_idx=0)
        self.pos_emb = nn.Embedding(arch.max_len, arch.d)
        self.blocks = nn.ModuleList(
            Block(arch.d, layer.heads, arch.head_size, layer.ffn, arch.gates, dropout) for layer in arch.layers
        )
        self.ln_in = nn.LayerNorm(arch.d)
        self.drop = Dropout(dropout)
        causal = torch.triu(torch.full((arch.max_len, arch.max_len), NEG), diagonal=1)
        self.register_buffer("causal", causal, persistent=False)
        self.apply(_init_weights)

    def embed(self, ids: torch.Tensor, active: Arch | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """ids [B, L] → (embedded x [B, L, d], additive attention mask [B, 1, L, L], keep-mask [B, L], gate input or None)."""
        arch = active or self.arch
        L, d = arch.max_len, arch.d
        ids = ids[:, -L:]  # reading only the newest L items: positions are counted from the newest
        L = ids.shape[1]
        keep = (ids != 0).to(self.item_emb.weight.dtype)  # [B, L]
        pos = self.pos_emb.weight[:L, :d].flip(0)
        x = layer_norm(self.ln_in, F.embedding(ids, self.item_emb.weight[:, :d]) + pos, d)
        x = x * keep.unsqueeze(-1)
        summary = None
        if arch.gates:
            # The gates read the history seen so far: by default a causal running mean of the embedded
            # input, or (gate_input "position", the paper's form) the embedded item at each position.
            # Either way training with a loss at every position cannot peek at future items through them.
            summary = running_mean(x, keep) if arch.gate_input == "mean" else x
        # The causal part is a constant slice (built once): generating it per call costs more than
        # a whole block in ExecuTorch's portable kernels at L 200.
        mask = self.causal[-L:, -L:] + (1.0 - keep).view(-1, 1, 1, L) * NEG  # [B, 1, L, L]
        return x, mask, keep, summary

    def attention_step(self, i: int, x: torch.Tensor, mask: torch.Tensor, keep: torch.Tensor, arch: Arch,
                       final: bool = False, head_weights: torch.Tensor | None = None) -> torch.Tensor:
        """Attention + residual + LN of block i (only the newest position when `final`)."""
        block, layer = self.blocks[i], arch.layers[i]
        a = block.attn(x, mask[:, :, -1:, :] if final else mask, keep, d=arch.d, heads=layer.heads,
                       kind=arch.attention, last_only=final, head_weights=head_weights)
        return layer_norm(block.ln1, (x[:, -1:] if final else x) + self.drop(a), arch.d)

    def ffn_step(self, i: int, x: torch.Tensor, keep: torch.Tensor, summary: torch.Tensor | None, arch: Arch,
                 final: bool = False, ffn_weights: torch.Tensor | None = None) -> torch.Tensor:
        """(Gated) FFN + residual + LN + padding re-mask of block i."""
        block, layer, d = self.blocks[i], arch.layers[i], arch.d
        g_in = g_out = None
        if arch.gates and block.gate_inner is not None:
            s = summary[:, -1:] if final else summary
            g_in = block.gate_inner(s, d, layer.ffn)
            g_out = block.gate_out(s, d, d)
        y = block.ffn(x, d=d, ffn=layer.ffn, gate_inner=g_in, gate_out=g_out, ffn_weights=ffn_weights)
        x = layer_norm(block.ln2, x + self.drop(y), d)
        return x * (keep[:, -1:] if final else keep).unsqueeze(-1)

    def encode(
        self,
        ids: torch.Tensor,
        active: Arch | None = None,
        *,
        last_only: bool = False,
        soft: SoftChoice | None = None,
    ) -> torch.Tensor:
        """Item ids [B, L] (left-padded with 0, newest last) → hidden states [B, L', d] ([B, d] with last_only)."""
        arch = active or self.arch
        x, mask, keep, summary = self.embed(ids, arch)
        x = self.drop(x)
        mixed = None
        for i in range(arch.depth):
            final = last_only and i == arch.depth - 1 and soft is None
            x = self.attention_step(i, x, mask, keep, arch, final, soft.head_weights[i] if soft and soft.head_weights else None)
            x = self.ffn_step(i, x, keep, summary, arch, final, soft.ffn_weights[i] if soft and soft.ffn_weights else None)
            if soft is not None and soft.depth_weights is not None:
                mixed = x * soft.depth_weights[i] if mixed is None else mixed + x * soft.depth_weights[i]
        if mixed is not None:
            x = mixed
        if last_only:
            return x[:, -1]
        return x

    def item_weights(self, active: Arch | None = None) -> torch.Tensor:
        """The (tied) output embedding table [N+1, d] for the active width."""
        d = (active or self.arch).d
        return self.item_emb.weight[:, :d]

    def score(self, hidden: torch.Tensor, active: Arch | None = None) -> torch.Tensor:
        """Hidden states [..., d] → scores over the catalogue [..., N+1]; padding (index 0) scores NEG."""
        logits = hidden @ self.item_weights(active).t()
        return logits.index_fill(-1, torch.zeros(1, dtype=torch.long, device=logits.device), NEG)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Scores of every item as the next one after each sequence's newest item: [B, N+1]."""
        return self.score(self.encode(ids, last_only=True))

    def loss(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        active: Arch | None = None,
        *,
        soft: SoftChoice | None = None,
        kind: str = "ce",
        generator: torch.Generator | None = None,
        negatives: int = 256,
        logq: bool = False,
        chunk_bytes: int = 256 * 2**20,
    ) -> torch.Tensor:
        """Next-item loss at every non-padded position of `targets` [B, L], or on the newest position only
        when `targets` is [B] (one target per row: prefix training, whose last block then runs for that
        position alone).

        `ce`: full-softmax cross-entropy over the catalogue, computed in checkpointed chunks of rows when
        the logits would exceed `chunk_bytes`. `sampled-ce`: softmax over the target and `negatives`
        uniform negatives shared by the batch (with `logq`, each negative's logit gets + log(N / negatives),
        so their exponentials estimate the whole catalogue's partition function). `bce`: BCE with one
        sampled negative per position.
        """
        arch = active or self.arch
        L = arch.max_len
        if targets.dim() == 1:
            inputs = inputs[:, -L:]
            hidden = self.encode(inputs, active, soft=soft, last_only=True)
        else:
            inputs, targets = inputs[:, -L:], targets[:, -L:]
            hidden = self.encode(inputs, active, soft=soft)
        valid = targets != 0
        h = hidden[valid]  # only positions with a target: less work on padded histories
        t = targets[valid]
        table = self.item_weights(active)
        if kind == "ce":

            def summed_ce(h_rows: torch.Tensor, weights: torch.Tensor, t_rows: torch.Tensor) -> torch.Tensor:
                logits = h_rows @ weights.t()
                logits[:, 0] = NEG
                return F.cross_entropy(logits, t_rows, reduction="sum")

            rows = max(1, chunk_bytes // (table.shape[0] * h.element_size()))
            if h.shape[0] <= rows:
                return summed_ce(h, table, t) / max(h.shape[0], 1)
            from torch.utils.checkpoint import checkpoint

            # Without recomputation every chunk's logits (and softmax) would stay alive until backward,
            # which is the very memory the chunking is meant to save.
            total = sum(checkpoint(summed_ce, h[i : i + rows], table, t[i : i + rows], use_reentrant=False)
                        for i in range(0, h.shape[0], rows))
            return total / h.shape[0]
        if kind == "sampled-ce":
            if negatives < 1:
                raise ValueError(f"negatives must be at least 1, got {negatives}")
            neg = torch.randint(1, self.n_items + 1, (negatives,), device=t.device, generator=generator)
            pos_logit = (h * table[t]).sum(-1, keepdim=True)
            neg_logit = h @ table[neg].t()
            if logq:
                neg_logit = neg_logit + math.log(self.n_items / negatives)
            # A negative that is the row's own target would push the target down against itself.
            neg_logit = neg_logit.masked_fill(neg.view(1, -1) == t.view(-1, 1), NEG)
            logits = torch.cat([pos_logit, neg_logit], dim=1)
            return F.cross_entropy(logits, torch.zeros_like(t))
        if kind == "bce":
            neg = torch.randint(1, self.n_items + 1, t.shape, device=t.device, generator=generator)
            pos_logit = (h * table[t]).sum(-1)
            neg_logit = (h * table[neg]).sum(-1)
            return F.binary_cross_entropy_with_logits(pos_logit, torch.ones_like(pos_logit)) + F.binary_cross_entropy_with_logits(
                neg_logit, torch.zeros_like(neg_logit)
            )
        raise ValueError(f"unknown loss kind {kind!r}")


def _init_weights(module: nn.Module) -> None:
    # RecBole's N(0, 0.02); nn.Module.apply visits children first, so a Gate re-initialises its output layer last.
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)
        if module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
    elif isinstance(module, Gate):
        nn.init.zeros_(module.fc2.bias)
        nn.init.normal_(module.fc2.weight, std=0.01)
