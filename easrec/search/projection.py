"""From architecture probabilities to one architecture that fits the budget, found exactly.

The search ends with independent categorical distributions over every elastic choice (sequence
length, width, attention kind, depth, and per layer heads and FFN width). The architecture it
returns is the *most probable one whose predicted cost is within the budget*. Because every cost
model is additive over components, this is a multiple-choice knapsack that is solved exactly: for
each (L, d, attention kind, depth) the per-layer choices are merged one layer at a time, keeping only
the Pareto front of (cost, log-probability); the best point of the front under the remaining budget
is the optimum for that combination. Nothing here walks from the argmax towards cheaper neighbours,
so measured costs that are not monotone in every field cannot make it fail: whenever the budget is
feasible, an architecture is returned.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from easrec.cost import Component, CostModel
from easrec.errors import EasrecError
from easrec.space import Arch, LayerArch, SearchSpace

log = logging.getLogger(__name__)

# Relative slack on the final check: the DP sums component costs in a different order than
# `CostModel.cost`, and a rounding difference must not turn a fitting architecture into a miss.
_EPS = 1e-9


@dataclass(frozen=True)
class ChoiceLogProbs:
    """log p of every candidate of every elastic choice (the search's α after softmax)."""

    max_len: tuple[float, ...]
    d: tuple[float, ...]
    depth: tuple[float, ...]
    attention: tuple[float, ...]
    heads: tuple[tuple[float, ...], ...]  # per layer slot
    ffn: tuple[tuple[float, ...], ...]

    @classmethod
    def from_logits(cls, max_len: torch.Tensor, d: torch.Tensor, depth: torch.Tensor, attention: torch.Tensor,
                    heads: list[torch.Tensor], ffn: list[torch.Tensor]) -> "ChoiceLogProbs":
        """log-softmax of α for every choice (α's temperature does not change the argmax under a budget)."""
        lp = lambda a: tuple(float(x) for x in F.log_softmax(a.detach().double(), 0))  # noqa: E731
        return cls(lp(max_len), lp(d), lp(depth), lp(attention), tuple(lp(h) for h in heads), tuple(lp(f) for f in ffn))

    @classmethod
    def uniform(cls, space: SearchSpace) -> "ChoiceLogProbs":
        """Every choice equally likely (the projection then returns the most expensive architecture that fits)."""
        z = lambda n: (0.0,) * n  # noqa: E731
        n = space.depths[-1]
        return cls(z(len(space.max_lens)), z(len(space.ds)), z(len(space.depths)), z(len(space.attentions)),
                   tuple(z(len(space.heads)) for _ in range(n)), tuple(z(len(space.ffns)) for _ in range(n)))

    def score(self, space: SearchSpace, arch: Arch) -> float:
        """log p(arch) under these independent choices."""
        s = (self.max_len[space.max_lens.index(arch.max_len)] + self.d[space.ds.index(arch.d)]
             + self.depth[space.depths.index(arch.depth)] + self.attention[space.attentions.index(arch.attention)])
        for i, layer in enumerate(arch.layers):
            s += self.heads[i][space.heads.index(layer.heads)] + self.ffn[i][space.ffns.index(layer.ffn)]
        return s


def _layer_options(cm: CostModel, lp: ChoiceLogProbs, L: int, d: int, kind: str, slot: int, last: bool,
                   tie: float) -> list[tuple[float, float, LayerArch]]:
    sp = cm.space
    out = []
    for hi, h in enumerate(sp.heads):
        for fi, f in enumerate(sp.ffns):
            layer = LayerArch(h, f)
            cost = cm._layer_cost(L, d, kind, layer, last)
            out.append((cost, lp.heads[slot][hi] + lp.ffn[slot][fi] + tie * cost, layer))
    return out


def _pareto(points: list[tuple[float, float, tuple]]) -> list[tuple[float, float, tuple]]:
    """Points not dominated in (lower cost, higher log-probability), sorted by cost."""
    points.sort(key=lambda p: (p[0], -p[1]))
    front, best = [], -float("inf")
    for p in points:
        if p[1] > best:
            front.append(p)
            best = p[1]
    return front


def candidate_fronts(cm: CostModel, lp: ChoiceLogProbs, tilt: float = 0.0):
    """Yield (global score, fixed cost, L, d, kind, Pareto front of the layers) for every (L, d, kind, depth).

    Scores are log p plus a tie-break far below any real difference in log p (1e-6 nats over the
    whole cost range) that prefers the more expensive of two equally probable architectures, plus
    `tilt` nats per full-model cost: a Lagrange multiplier that trades probability for spending.
    """
    sp = cm.space
    c = cm.component_cost
    tie = (1e-6 + tilt) / max(abs(cm.cost(sp.largest())), 1e-12)
    for (li, L), (di, d), (ki, kind) in itertools.product(enumerate(sp.max_lens), enumerate(sp.ds), enumerate(sp.attentions)):
        fixed = c(Component.make("embedding", L=L, d=d)) + c(Component.make("scoring", d=d)) + c(Component.make("overhead"))
        base = lp.max_len[li] + lp.d[di] + lp.attention[ki] + tie * fixed
        inner = [_layer_options(cm, lp, L, d, kind, i, False, tie) for i in range(sp.depths[-1])]
        for ni, depth in enumerate(sp.depths):
            front: list[tuple[float, float, tuple]] = [(0.0, 0.0, ())]
            for i in range(depth):
                opts = _layer_options(cm, lp, L, d, kind, i, True, tie) if i == depth - 1 else inner[i]
                front = _pareto([(fc + oc, fl + ol, ch + (la,)) for fc, fl, ch in front for oc, ol, la in opts])
            yield base + lp.depth[ni], fixed, L, d, kind, front


def most_probable_within(cm: CostModel, lp: ChoiceLogProbs, budget: float, tilt: float = 0.0) -> Arch:
    """The most probable architecture whose predicted cost is at most `budget` (exact for an additive cost model).

    Among equally probable ones the most expensive is taken, so that a flat distribution spends the
    budget. With `tilt` > 0 the objective is log p + tilt · cost / cost(largest) instead.
    """
    sp = cm.space
    best: tuple[float, float, Arch] | None = None
    for glp, fixed, L, d, kind, front in candidate_fronts(cm, lp, tilt):
        # The front is sorted by cost with strictly increasing log p: the last point that fits is the
        # most probable one for this combination. Check the model's own cost (it may apply a correction).
        for cost_sum, layer_lp, layers in reversed(front):
            arch = Arch(L, d, layers, kind, sp.gates, sp.head_size, sp.gate_input)
            cost = cm.cost(arch)
            if cost <= budget * (1 + _EPS):
                if best is None or glp + layer_lp > best[0]:
                    best = (glp + layer_lp, cost, arch)
                break
    if best is None:
        cheapest = cm.cheapest()
        raise EasrecError(f"budget {budget:.4g} {cm.unit} is infeasible: the smallest architecture in the search space "
                          f"({cheapest.describe()}) costs {cm.cost(cheapest):.4g} {cm.unit}")
    return best[2]


def grow_within(cm: CostModel, lp: ChoiceLogProbs, arch: Arch, budget: float, fill: float = 0.9) -> Arch:
    """The most probable architecture within the budget that spends at least `fill` × budget, if `arch` spends less.

    Solved as the Lagrangian relaxation of that lower bound: the smallest tilt (nats per unit of
    cost) for which the exact projection spends `fill` × budget, found by bisection. Returns `arch`
    when it already spends enough, and the most expensive architecture that fits when none reaches `fill`.
    """
    if cm.cost(arch) >= fill * budget:
        return arch
    lo, hi = 0.0, 1.0
    while cm.cost(most_probable_within(cm, lp, budget, hi)) < fill * budget and hi < 1e7:
        lo, hi = hi, hi * 8
    best = most_probable_within(cm, lp, budget, hi)
    for _ in range(12):
        mid = (lo + hi) / 2
        cand = most_probable_within(cm, lp, budget, mid)
        if cm.cost(cand) >= fill * budget:
            hi, best = mid, cand
        else:
            lo = mid
    return best


def larger_neighbours(sp: SearchSpace, a: Arch) -> list[Arch]:
    """Architectures one step larger than `a` in exactly one choice (a new layer copies the last one)."""
    out = []
    for name, values in (("max_len", sp.max_lens), ("d", sp.ds)):
        i = values.index(getattr(a, name))
        if i + 1 < len(values):
            out.append(Arch(**{**a.__dict__, name: values[i + 1]}))
    out += [Arch(**{**a.__dict__, "attention": kind}) for kind in sp.attentions if kind != a.attention]
    j = sp.depths.index(a.depth)
    if j + 1 < len(sp.depths):
        extra = sp.depths[j + 1] - a.depth
        out.append(Arch(**{**a.__dict__, "layers": a.layers + (a.layers[-1],) * extra}))
    for i, layer in enumerate(a.layers):
        for attr, values in (("heads", sp.heads), ("ffn", sp.ffns)):
            j = values.index(getattr(layer, attr))
            if j + 1 < len(values):
                layers = list(a.layers)
                layers[i] = LayerArch(**{**layer.__dict__, attr: values[j + 1]})
                out.append(Arch(**{**a.__dict__, "layers": tuple(layers)}))
    return out
