"""One small module per cost component, built from the real SASRec blocks at the component's size.

Every module here holds modules of a real `easrec.model.sasrec.SASRec` (its embeddings, a `Block`'s
LayerNorms, `Attention`, `FeedForward`, `Gate`s, the final LayerNorm) and calls their forward with
exactly the masks and slicing `SASRec.encode` uses; scoring goes through the shipped
`easrec.export.graph.TopKGraph`. Nothing here re-implements the math of a block: only the few lines
of glue between blocks that `encode` runs (residuals, masks), which `tests/test_profiling.py` checks
against a real forward pass.

Split of one forward pass (`easrec.cost.components`):

| component | module | inputs → outputs |
|---|---|---|
| embedding(L,d) | item + position embedding, padding keep-mask, causal+padding attention mask | ids [1,L] → x, mask [1,1,L,L], keep [1,L] |
| attention(L,d,heads,hs,kind) | LN1 + attention + residual on all L positions | x, mask (softmax) or keep (linear) → x |
| last_attention | the same, querying only the newest position | x, mask or keep → x [1,1,d] |
| ffn(L,d,ffn) | LN2 + FFN + residual + padding re-mask | x, keep → x |
| gates(L,d,ffn) | running mean of the embedded input + both gates, measured as (gated FFN) − (FFN) | x, x0, keep → x |
| last_ffn(d,ffn) | the newest position's LN2 + FFN + residual + re-mask + final LN | x [1,1,d], keep → h [1,d] |
| last_gates(d,ffn) | gated last FFN − last FFN (the gates read the last row of the running mean) | x, s [1,1,d], keep → h |
| scoring(d) | `TopKGraph`'s catalogue scores + seen-item exclusion + top-k | h [1,d], ids → (indices, scores) |
| overhead | one call of the runtime on a trivial graph | ids → ids + 1 |

The "gates" components are measured as a difference (`BASE_OF`): the gated FFN module minus the plain
one, so the gate multiplications inside the FFN are counted too.
"""

from __future__ import annotations


import torch
import torch.nn as nn

from easrec.cost import Component
from easrec.export.graph import TopKGraph
from easrec.model.sasrec import SASRec, layer_norm, running_mean
from easrec.space import Arch, LayerArch

SCORING_LEN = 100  # history length the scoring component excludes seen items over
TOP_K = 10
FILL = 0.6  # share of real (non-padding) items in example histories

# Components measured as the difference of two modules: entry = module(component) − module(BASE_OF(component)).
BASE_OF = {"gates": "ffn", "last_gates": "last_ffn"}


def base_component(component: Component) -> Component | None:
    """The component whose measurement is subtracted from this one's (gates: the ungated FFN)."""
    base = BASE_OF.get(component.name)
    return None if base is None else Component(base, component.key)


def padded_ids(L: int, n_items: int, batch: int = 1, fill: float = FILL, seed: int = 0) -> torch.Tensor:
    """Realistic item ids [batch, L]: left padding (0), then `fill`·L random items, newest last."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.zeros(batch, L, dtype=torch.long)
    n = max(1, min(L, int(round(L * fill))))
    ids[:, -n:] = torch.randint(1, n_items + 1, (batch, n), generator=g)
    return ids


class EmbeddingPart(nn.Module):
    """ids → embedded sequence, attention mask and padding keep-mask: `SASRec.embed`."""

    def __init__(self, model: SASRec, L: int, d: int):
        super().__init__()
        self.model = model
        self.arch = Arch(L, d, model.arch.layers, model.arch.attention, False, model.arch.head_size)

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, mask, keep, _ = self.model.embed(ids, self.arch)
        return x, mask, keep


class AttentionPart(nn.Module):
    """LN1 + attention + residual of block `i` (only the newest position when `last`): `SASRec.attention_step`."""

    def __init__(self, model: SASRec, i: int, arch: Arch, last: bool):
        super().__init__()
        self.model, self.i, self.arch, self.last = model, i, arch, last

    def forward(self, x: torch.Tensor, mask: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        return self.model.attention_step(self.i, x, mask, keep, self.arch, final=self.last)


class FeedForwardPart(nn.Module):
    """LN2 + (optionally gated) FFN + residual + re-mask of block `i` (`SASRec.ffn_step`); `last` adds the final LN."""

    def __init__(self, model: SASRec, i: int, arch: Arch, last: bool, gated: bool):
        super().__init__()
        self.model, self.i, self.last, self.gated = model, i, last, gated
        self.arch = Arch(arch.max_len, arch.d, arch.layers, arch.attention, gated, arch.head_size)

    def forward(self, x: torch.Tensor, keep: torch.Tensor, gate_input: torch.Tensor | None = None) -> torch.Tensor:
        summary = None
        if self.gated:
            # Inner blocks read the running mean over all positions; the last block its newest row.
            summary = gate_input if self.last else running_mean(gate_input, keep)
        x = self.model.ffn_step(self.i, x, keep, summary, self.arch, final=self.last)
        if self.last:
            return layer_norm(self.model.ln_f, x, self.arch.d)[:, -1]
        return x


class _GivenHidden(SASRec):
    """A SASRec whose `encode` returns the hidden state handed to the scoring part (no blocks run)."""

    def encode(self, ids, active=None, *, last_only=False, soft=None):  # noqa: D102
        return self._given[0]


class ScoringPart(nn.Module):
    """The shipped graph's scoring: `TopKGraph` over a given final hidden state [1, d]."""

    def __init__(self, model: _GivenHidden, k: int = TOP_K):
        super().__init__()
        self.topk = TopKGraph(model, k=min(k, model.n_items))  # TopKGraph holds its own copy of the model
        self._slot: list = [None]
        self.topk.model._given = self._slot

    def forward(self, h: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._slot[0] = h
        try:
            return self.topk(ids)
        finally:
            self._slot[0] = None


class Overhead(nn.Module):
    """The smallest graph a runtime can run: the fixed cost of one call."""

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return ids + 1


def component_arch(component: Component, head_size: int) -> Arch:
    """A one-block architecture holding the component at its size."""
    k = dict(component.key)
    d = int(k.get("d", 16))
    L = int(k.get("L", SCORING_LEN))
    heads = int(k.get("heads", 1))
    hs = int(k.get("hs", head_size))
    ffn = int(k.get("ffn", 32))
    gates = component.name in ("gates", "last_gates")
    return Arch(max_len=L, d=d, layers=(LayerArch(heads, ffn),), attention=str(k.get("kind", "softmax")), gates=gates, head_size=hs)


def component_module(
    component: Component,
    n_items: int,
    head_size: int = 16,
    *,
    model: SASRec | None = None,
    block: int = 0,
    seed: int = 0,
) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """The module measured for `component` and its example inputs (batch 1, realistic padded ids).

    By default a fresh SASRec of a one-block architecture at the component's size is built; pass
    `model` (and `block`) to wrap the blocks of an existing model instead (the tests do, to compare
    with its forward pass).
    """
    name = component.name
    k = dict(component.key)
    torch.manual_seed(seed)
    if name == "overhead":
        return Overhead().eval(), (padded_ids(50, n_items, seed=seed),)
    if name == "scoring":
        d = int(k["d"])
        base = model if model is not None else None
        arch = Arch(SCORING_LEN, d, (), "softmax", False, head_size)
        scorer = _GivenHidden(arch, n_items)
        if base is not None:
            with torch.no_grad():
                scorer.item_emb.weight.copy_(base.item_emb.weight[:, :d])
        h = torch.randn(1, d)
        return ScoringPart(scorer.eval()).eval(), (h, padded_ids(SCORING_LEN, n_items, seed=seed))

    arch = model.arch if model is not None else component_arch(component, head_size)
    model = (model if model is not None else SASRec(arch, n_items)).eval()
    L, d = int(k.get("L", arch.max_len)), arch.d
    emb = EmbeddingPart(model, arch.max_len if "L" not in k else L, d).eval()
    ids = padded_ids(emb.arch.max_len, n_items, seed=seed)
    with torch.no_grad():
        x0, mask, keep = emb(ids)
        # A realistic block input: the embedded sequence after one attention residual.
        x = x0 + 0.1 * torch.randn_like(x0) * keep.unsqueeze(-1)
    if name == "embedding":
        return emb, (ids,)
    last = name.startswith("last_")
    if name in ("attention", "last_attention"):
        part = AttentionPart(model, block, arch, last).eval()
        return part, (x, mask, keep)
    gated = name in ("gates", "last_gates")
    part = FeedForwardPart(model, block, arch, last, gated).eval()
    xin = x[:, -1:] if last else x
    if not gated:
        return part, (xin, keep)
    s = running_mean(x0, keep)[:, -1:] if last else x0
    return part, (xin, keep, s)
