"""The weight-sharing supernet: SASRec at the largest size of a search space, run as any of its subnets."""

from __future__ import annotations

import logging

import torch

from easrec.model.sasrec import DEFAULT_DROPOUT, SASRec
from easrec.space import Arch, SearchSpace

log = logging.getLogger(__name__)


class Supernet(SASRec):
    """SASRec built at `space.largest()`; every `Arch` of the space is a leading slice of its weights."""

    def __init__(self, space: SearchSpace, n_items: int, dropout: float = DEFAULT_DROPOUT):
        super().__init__(space.largest(), n_items, dropout)
        self.space = space

    @torch.no_grad()
    def sort_by_importance(self) -> None:
        """Reorder heads and FFN neurons by importance (L1 norm of their weights), most important first.

        The function the full network computes is unchanged; shrinking afterwards keeps the heads and
        neurons that matter most (once-for-all's channel sorting).
        """
        hs = self.arch.head_size
        for block in self.blocks:
            attn = block.attn
            heads = attn.q.weight.shape[0] // hs
            score = (attn.o.weight.abs().sum(0).view(heads, hs).sum(-1)
                     + attn.v.weight.abs().sum(1).view(heads, hs).sum(-1))
            order = torch.argsort(score, descending=True)
            idx = (order.view(-1, 1) * hs + torch.arange(hs)).reshape(-1)
            for lin in (attn.q, attn.k, attn.v):
                lin.weight.copy_(lin.weight[idx])
                lin.bias.copy_(lin.bias[idx])
            attn.o.weight.copy_(attn.o.weight[:, idx])
            ffn = block.ffn
            neuron = ffn.fc1.weight.abs().sum(1) + ffn.fc2.weight.abs().sum(0)
            order = torch.argsort(neuron, descending=True)
            ffn.fc1.weight.copy_(ffn.fc1.weight[order])
            ffn.fc1.bias.copy_(ffn.fc1.bias[order])
            ffn.fc2.weight.copy_(ffn.fc2.weight[:, order])
            if block.gate_inner is not None:
                block.gate_inner.fc2.weight.copy_(block.gate_inner.fc2.weight[order])
                block.gate_inner.fc2.bias.copy_(block.gate_inner.fc2.bias[order])

    @torch.no_grad()
    def extract(self, arch: Arch) -> SASRec:
        """A plain SASRec of exactly `arch`'s size carrying the inherited weights (no masks, no controllers)."""
        self.space.validate(arch)
        sub = SASRec(arch, self.n_items, self.dropout)
        d, hs = arch.d, arch.head_size
        sub.item_emb.weight.copy_(self.item_emb.weight[:, :d])
        sub.pos_emb.weight.copy_(self.pos_emb.weight[: arch.max_len, :d])
        _copy_ln(sub.ln_in, self.ln_in, d)
        for layer, src, dst in zip(arch.layers, self.blocks, sub.blocks):
            inner = layer.heads * hs
            _copy_ln(dst.ln1, src.ln1, d)
            _copy_ln(dst.ln2, src.ln2, d)
            for name in ("q", "k", "v"):
                _copy_linear(getattr(dst.attn, name), getattr(src.attn, name), inner, d)
            _copy_linear(dst.attn.o, src.attn.o, d, inner)
            _copy_linear(dst.ffn.fc1, src.ffn.fc1, layer.ffn, d)
            _copy_linear(dst.ffn.fc2, src.ffn.fc2, d, layer.ffn)
            if arch.gates:
                for name, out in (("gate_inner", layer.ffn), ("gate_out", d)):
                    g_src, g_dst = getattr(src, name), getattr(dst, name)
                    _copy_linear(g_dst.fc1, g_src.fc1, g_src.fc1.weight.shape[0], d)
                    _copy_linear(g_dst.fc2, g_src.fc2, out, g_src.fc2.weight.shape[1])
        sub.train(self.training)
        return sub


def _copy_linear(dst: torch.nn.Linear, src: torch.nn.Linear, rows: int, cols: int) -> None:
    dst.weight.copy_(src.weight[:rows, :cols])
    dst.bias.copy_(src.bias[:rows])


def _copy_ln(dst: torch.nn.LayerNorm, src: torch.nn.LayerNorm, d: int) -> None:
    dst.weight.copy_(src.weight[:d])
    dst.bias.copy_(src.bias[:d])
