"""Cost models: what an architecture costs on a target, and its differentiable expectation for the search.

Every cost model here is *additive over components*: a subnet costs the sum of its parts
(embedding, per-block attention / FFN / gates, the final block that only computes the newest position,
catalogue scoring + top-k, a fixed runtime overhead). The decomposition lives in `components(arch)`;
a model only has to say what one component costs (`component_cost`). The FLOPs model computes it;
the measured latency table (`easrec.profiling.lut.LatencyTable`) looks it up. Because the sum is
additive, the expected cost under independent per-choice probabilities is exact (`expected_cost`).
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Iterable

import torch

from easrec.space import Arch, LayerArch, SearchSpace

# (component name, key fields) – the LUT is keyed on exactly these.
COMPONENT_FIELDS: dict[str, tuple[str, ...]] = {
    "embedding": ("L", "d"),
    "attention": ("L", "d", "heads", "hs", "kind"),
    "ffn": ("L", "d", "ffn"),
    "gates": ("L", "d", "ffn"),
    "last_attention": ("L", "d", "heads", "hs", "kind"),
    "last_ffn": ("d", "ffn"),
    "last_gates": ("d", "ffn"),
    "scoring": ("d",),
    "overhead": (),
}


@dataclass(frozen=True)
class Component:
    """One additive part of a model's cost, e.g. `attention(L=200, d=64, heads=2, kind=softmax)`."""

    name: str
    key: tuple[tuple[str, object], ...]

    @classmethod
    def make(cls, name: str, **key: object) -> "Component":
        """Build a component, checking that the key fields are exactly the component's."""
        fields = COMPONENT_FIELDS[name]
        if set(key) != set(fields):
            raise ValueError(f"component {name} needs fields {fields}, got {tuple(key)}")
        return cls(name, tuple((f, key[f]) for f in fields))

    def get(self, field: str) -> object:
        """Value of one key field."""
        return dict(self.key)[field]

    def id(self) -> str:
        """Stable string id, e.g. `attention/L=200/d=64/heads=2/kind=softmax`."""
        return "/".join([self.name] + [f"{k}={v}" for k, v in self.key])


def components(arch: Arch) -> list[Component]:
    """The components a model of `arch` runs, in order."""
    L, d = arch.max_len, arch.d
    out = [Component.make("embedding", L=L, d=d)]
    for i, layer in enumerate(arch.layers):
        last = i == arch.depth - 1
        if last:
            out.append(Component.make("last_attention", L=L, d=d, heads=layer.heads, hs=arch.head_size, kind=arch.attention))
            out.append(Component.make("last_ffn", d=d, ffn=layer.ffn))
            if arch.gates:
                out.append(Component.make("last_gates", d=d, ffn=layer.ffn))
        else:
            out.append(Component.make("attention", L=L, d=d, heads=layer.heads, hs=arch.head_size, kind=arch.attention))
            out.append(Component.make("ffn", L=L, d=d, ffn=layer.ffn))
            if arch.gates:
                out.append(Component.make("gates", L=L, d=d, ffn=layer.ffn))
    out.append(Component.make("scoring", d=d))
    out.append(Component.make("overhead"))
    return out


def space_components(space: SearchSpace, extra: Iterable[Arch] = ()) -> list[Component]:
    """Every component any architecture of `space` (plus the `extra` ones) can run, without duplicates."""
    seen: dict[Component, None] = {}
    for L, d, kind in itertools.product(space.max_lens, space.ds, space.attentions):
        for h in space.heads:
            seen[Component.make("attention", L=L, d=d, heads=h, hs=space.head_size, kind=kind)] = None
            seen[Component.make("last_attention", L=L, d=d, heads=h, hs=space.head_size, kind=kind)] = None
    for L, d, f in itertools.product(space.max_lens, space.ds, space.ffns):
        seen[Component.make("ffn", L=L, d=d, ffn=f)] = None
        if space.gates:
            seen[Component.make("gates", L=L, d=d, ffn=f)] = None
    for d, f in itertools.product(space.ds, space.ffns):
        seen[Component.make("last_ffn", d=d, ffn=f)] = None
        if space.gates:
            seen[Component.make("last_gates", d=d, ffn=f)] = None
    for L, d in itertools.product(space.max_lens, space.ds):
        seen[Component.make("embedding", L=L, d=d)] = None
    for d in space.ds:
        seen[Component.make("scoring", d=d)] = None
    seen[Component.make("overhead")] = None
    for arch in extra:
        for c in components(arch):
            seen[c] = None
    return list(seen)


@dataclass
class ArchProbs:
    """Independent categorical distributions over every elastic choice (one entry per candidate)."""

    max_len: torch.Tensor
    d: torch.Tensor
    depth: torch.Tensor
    attention: torch.Tensor
    heads: list[torch.Tensor]  # per layer slot (max depth of them)
    ffn: list[torch.Tensor]


class CostModel(ABC):
    """What an architecture costs on one target; additive over `components(arch)`."""

    unit: str = ""
    space: SearchSpace

    @abstractmethod
    def component_cost(self, component: Component) -> float:
        """Cost of one component in `unit`."""

    def cost(self, arch: Arch) -> float:
        """Predicted cost of a whole architecture."""
        return float(sum(self.component_cost(c) for c in components(arch)))

    def cheapest(self) -> Arch:
        """The architecture of the space with the lowest cost under this model (exact for an additive model).

        Not `space.smallest()`: on a real device the narrowest choice is not always the cheapest
        (linear attention can cost more than softmax at short L, for instance).
        """
        sp = self.space
        best: tuple[float, Arch] | None = None
        for L, d, kind in itertools.product(sp.max_lens, sp.ds, sp.attentions):
            for depth in sp.depths:
                # Layers are independent in an additive model: pick each one's cheapest (heads, ffn).
                layers = []
                for i in range(depth):
                    last = i == depth - 1
                    options = [LayerArch(h, f) for h in sp.heads for f in sp.ffns]
                    layers.append(min(options, key=lambda la: self._layer_cost(L, d, kind, la, last)))
                arch = Arch(L, d, tuple(layers), kind, sp.gates, sp.head_size, sp.gate_input)
                c = self.cost(arch)
                if best is None or c < best[0]:
                    best = (c, arch)
        assert best is not None
        return best[1]

    def _layer_cost(self, L: int, d: int, kind: str, layer: LayerArch, last: bool) -> float:
        prefix = "last_" if last else ""
        rows = {} if last else {"L": L}
        parts = [Component.make(f"{prefix}attention", L=L, d=d, heads=layer.heads, hs=self.space.head_size, kind=kind),
                 Component.make(f"{prefix}ffn", **rows, d=d, ffn=layer.ffn)]
        if self.space.gates:
            parts.append(Component.make(f"{prefix}gates", **rows, d=d, ffn=layer.ffn))
        return sum(self.component_cost(c) for c in parts)

    def breakdown(self, arch: Arch) -> dict[str, float]:
        """Per-component predicted costs, for reports."""
        return {c.id(): self.component_cost(c) for c in components(arch)}

    def expected_cost(self, probs: ArchProbs, gates: bool | None = None) -> torch.Tensor:
        """E[cost] under `probs`, differentiable in them, exact for an additive model."""
        sp = self.space
        gates = sp.gates if gates is None else gates
        c = self.component_cost
        total = probs.d.new_zeros(())
        depth_p = probs.depth  # P(depth = depths[j])
        max_depth = sp.depths[-1]
        # P(layer i exists and is not the last) and P(layer i is the last one).
        p_inner, p_last = [], []
        for i in range(max_depth):
            p_last.append(sum((depth_p[j] for j, n in enumerate(sp.depths) if n == i + 1), probs.d.new_zeros(())))
            p_inner.append(sum((depth_p[j] for j, n in enumerate(sp.depths) if n > i + 1), probs.d.new_zeros(())))
        total = total + c(Component.make("overhead"))
        for di, d in enumerate(sp.ds):
            pd = probs.d[di]
            total = total + pd * c(Component.make("scoring", d=d))
            for i in range(max_depth):
                for fi, f in enumerate(sp.ffns):
                    last = c(Component.make("last_ffn", d=d, ffn=f))
                    if gates:
                        last += c(Component.make("last_gates", d=d, ffn=f))
                    total = total + pd * probs.ffn[i][fi] * p_last[i] * last
            for li, L in enumerate(sp.max_lens):
                pl = pd * probs.max_len[li]
                total = total + pl * c(Component.make("embedding", L=L, d=d))
                for i in range(max_depth):
                    for hi, h in enumerate(sp.heads):
                        for ki, kind in enumerate(sp.attentions):
                            w = pl * probs.heads[i][hi] * probs.attention[ki]
                            total = total + w * (
                                p_inner[i] * c(Component.make("attention", L=L, d=d, heads=h, hs=sp.head_size, kind=kind))
                                + p_last[i] * c(Component.make("last_attention", L=L, d=d, heads=h, hs=sp.head_size, kind=kind))
                            )
                    for fi, f in enumerate(sp.ffns):
                        inner = c(Component.make("ffn", L=L, d=d, ffn=f))
                        if gates:
                            inner += c(Component.make("gates", L=L, d=d, ffn=f))
                        total = total + pl * probs.ffn[i][fi] * p_inner[i] * inner
        return total
