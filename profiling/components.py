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
| embedding(L,d) | LayerNorm(item + position embedding), padding keep-mask, causal+padding attention mask | ids [1,L] → x, mask [1,1,L,L], keep [1,L] |
| attention(L,d,heads,hs,kind) | attention + residual + LN1 on all L positions | x, mask (softmax) or keep (linear) → x |
| last_attention | the same, querying only the newest position | x, mask or keep → x [1,1,d] |
| ffn(L,d,ffn) | FFN + residual + LN2 + padding re-mask | x, keep → x |
| gates(L,d,ffn) | running mean of the embedded input + both gates, measured as (gated FFN) − (FFN) | x, x0, keep → x |
| last_ffn(d,ffn) | the newest position's FFN + residual + LN2 + re-mask | x [1,1,d], keep → h [1,d] |
| last_gates(d,ffn) | gated last FFN − last FFN (the gates read the last row of the running mean) | x, s [1,1,d], keep → h |
| scoring(d) | `TopKGraph`'s catalogue scores + seen-item exclusion + top-k | h [1,d], ids → (indices, scores) |
| overhead | one call of the runtime on a trivial graph | ids → ids + 1 |

The "gates" components are measured as a difference (`BASE_OF`): the gated FFN module minus the plain
one, so the gate multiplications inside the FFN are counted too.

## In context: the LUT is solved from whole programs

Timed alone, a component pays a whole program's fixed costs (the call, input and output copies, the
first and last delegate hand-offs) and runs in a cache and partitioning context it never sees inside a
model: summed, such entries over-predicted small subnets 1.6–1.75× and under-predicted linear
attention 2.5–4×. So `easrec profile` no longer times these modules: it times whole shipped graphs
(`program_module`: `TopKGraph` over a SASRec of one architecture), chosen by `design_programs` so that
each new program differs from ones already chosen by one component (one more head in the last block,
one inner block more, gates on, ...), and solves Σ components = program time for the entries
(`easrec.profiling.solve.solve_entries`). A component's entry is then what it adds inside a whole
program, the per-call overhead is counted once (the `overhead` program, `ids + 1`), and linear
attention is timed where it runs. Components that only ever appear together (every architecture has
one embedding, one last block and one scoring; every inner block one attention and one FFN) cannot be
told apart by whole programs: that split (the "gauge") is set by a prior proportional to FLOPs and
does not change the cost of any architecture. The modules above stay as the reference split of one
forward pass (tests check them against `SASRec.encode`).
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import torch
import torch.nn as nn

from easrec.cost import Component, components, space_components
from easrec.export.graph import TopKGraph
from easrec.model.sasrec import SASRec, running_mean
from easrec.space import Arch, LayerArch

log = logging.getLogger(__name__)

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
    """Attention + residual + LN1 of block `i` (only the newest position when `last`): `SASRec.attention_step`."""

    def __init__(self, model: SASRec, i: int, arch: Arch, last: bool):
        super().__init__()
        self.model, self.i, self.arch, self.last = model, i, arch, last

    def forward(self, x: torch.Tensor, mask: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        return self.model.attention_step(self.i, x, mask, keep, self.arch, final=self.last)


class FeedForwardPart(nn.Module):
    """(Optionally gated) FFN + residual + LN2 + re-mask of block `i` (`SASRec.ffn_step`); `last` keeps the newest row."""

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
            return x[:, -1]
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


# ---------------------------------------------------------------- whole programs (in-context measurement)

OVERHEAD_PROGRAM = "overhead"


def program_id(arch: Arch) -> str:
    """Stable id of the whole program of `arch`, e.g. `program/L=50/d=32/kind=softmax/hs=16/gates=0/layers=2x128,1x32`."""
    layers = ",".join(f"{la.heads}x{la.ffn}" for la in arch.layers)
    return (f"program/L={arch.max_len}/d={arch.d}/kind={arch.attention}/hs={arch.head_size}/"
            f"gates={int(arch.gates)}/layers={layers}")


def program_module(arch: Arch, n_items: int, seed: int = 0) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """The shipped graph of `arch` (`TopKGraph` over a seeded SASRec) and realistic padded ids [1, L]."""
    torch.manual_seed(seed)
    model = SASRec(arch, n_items).eval()
    return TopKGraph(model, k=min(TOP_K, n_items)).eval(), (padded_ids(arch.max_len, n_items, seed=seed),)


def program_row(arch: Arch | None) -> Counter:
    """Component ids a program runs, with multiplicity (None: the overhead program, `ids + 1`)."""
    if arch is None:
        return Counter({OVERHEAD_PROGRAM: 1})
    return Counter(c.id() for c in components(arch))


@dataclass
class ProgramDesign:
    """The whole programs a LUT is solved from: ids, architectures (None: overhead), the unknown entries."""

    programs: list[tuple[str, Arch | None]]
    unknowns: list[str]
    rank: int
    candidates: int = 0
    uncovered: list[str] = field(default_factory=list)
    kind: str = "entries"  # "entries": one program per unknown; "shape": a shape model over fewer programs

    def matrix(self, pids: Iterable[str] | None = None) -> np.ndarray:
        """Counts [program, unknown] of the selected programs (or of `pids`, in that order)."""
        index = {u: j for j, u in enumerate(self.unknowns)}
        archs = dict(self.programs)
        pids = [p for p, _ in self.programs] if pids is None else list(pids)
        A = np.zeros((len(pids), len(self.unknowns)))
        for i, pid in enumerate(pids):
            for cid, n in program_row(archs[pid]).items():
                A[i, index[cid]] = n
        return A

    @property
    def gauge(self) -> int:
        """Directions whole programs cannot resolve (set by the prior)."""
        return len(self.unknowns) - self.rank


def _groups(space, extra: Iterable[Arch]) -> dict[tuple, dict[str, set]]:
    """(L, d, kind, head size) → the heads, FFN widths and gate settings programs of that group combine."""
    groups: dict[tuple, dict[str, set]] = {}

    def group(key):
        return groups.setdefault(key, {"heads": set(), "ffns": set(), "gates": set()})

    for L, d, kind in itertools.product(space.max_lens, space.ds, space.attentions):
        g = group((L, d, kind, space.head_size))
        g["heads"].update(space.heads)
        g["ffns"].update(space.ffns)
        # Gates are separate entries: ungated programs are needed to tell them from the FFN.
        g["gates"].update({False, True} if space.gates else {False})
    for arch in extra:
        g = group((arch.max_len, arch.d, arch.attention, arch.head_size))
        g["heads"].update(la.heads for la in arch.layers)
        g["ffns"].update(la.ffn for la in arch.layers)
        g["gates"].update({False, arch.gates})
    return groups


def candidate_programs(space, extra: Iterable[Arch] = ()) -> list[Arch]:
    """Depth-1 and depth-2 architectures of every group, cheapest and closest to the group's smallest first.

    The order makes the greedy design pick one-change steps: (h1, f1), then (h1, f2) (only the last
    FFN changed), (h2, f1) (only the last attention), then gates on, then one inner block, then that
    block's heads and FFN varied with the last block kept at its smallest.
    """
    groups = _groups(space, list(extra))
    kinds = {k: i for i, k in enumerate(("softmax", "linear"))}
    out: list[tuple[tuple, Arch]] = []
    for (L, d, kind, hs), g in groups.items():
        pairs = [LayerArch(h, f) for h in sorted(g["heads"]) for f in sorted(g["ffns"])]
        for gated in sorted(g["gates"]):
            for j, last in enumerate(pairs):
                out.append(((1, gated, L, d, kinds.get(kind, 9), hs, j, 0), Arch(L, d, (last,), kind, gated, hs)))
                for i, inner in enumerate(pairs):
                    out.append(((2, gated, L, d, kinds.get(kind, 9), hs, j, i), Arch(L, d, (inner, last), kind, gated, hs)))
    out.sort(key=lambda t: t[0])
    return [a for _, a in out]


def deep_programs(space, extra: Iterable[Arch] = ()) -> list[Arch]:
    """Three- and four-block programs per (L, d, attention) group: extra least-squares rows, so that inner
    blocks are also fitted where deep models run them (the basis alone is one and two blocks deep)."""
    out: list[Arch] = []
    for (L, d, kind, hs), g in _groups(space, list(extra)).items():
        pairs = [LayerArch(h, f) for h in sorted(g["heads"]) for f in sorted(g["ffns"])]
        big, mid, last = pairs[-1], pairs[len(pairs) // 2], pairs[0]
        out.append(Arch(L, d, (big, big, last), kind, False, hs))
        out.append(Arch(L, d, (mid, mid, mid, last), kind, False, hs))
        if True in g["gates"]:
            out.append(Arch(L, d, (mid, mid, mid, last), kind, True, hs))
    return out


def design_programs(space, extra: Iterable[Arch] = (), deep: bool = False) -> ProgramDesign:
    """The fewest whole programs that pin down every entry whole programs can pin down (greedy, by rank).

    Candidates come cheapest first (`candidate_programs`); one is kept when its component counts are
    not a combination of the kept ones'. The overhead program comes first. `deep` adds
    `deep_programs` as extra rows (they add no rank; the entries become a least-squares fit over them too).
    `shape_model.shape_design` keeps fewer of them, for a model of each component's shape.
    """
    extra = list(extra)
    unknowns = [c.id() for c in space_components(space, extra)]
    index = {u: j for j, u in enumerate(unknowns)}
    programs: list[tuple[str, Arch | None]] = [(OVERHEAD_PROGRAM, None)]
    basis = np.zeros((len(unknowns), len(unknowns)))  # orthonormal rows of the kept programs
    rank = 0

    def add(row: np.ndarray) -> bool:
        nonlocal rank
        r = row.astype(float).copy()
        q = basis[:rank]
        for _ in range(2):  # Gram–Schmidt twice: numerically exact enough for integer counts
            r -= q.T @ (q @ r)
        norm = float(np.linalg.norm(r))
        if norm <= 1e-9 * max(1.0, float(np.linalg.norm(row))):
            return False
        basis[rank] = r / norm
        rank += 1
        return True

    vec = np.zeros(len(unknowns))
    vec[index[OVERHEAD_PROGRAM]] = 1
    add(vec)
    seen: set[str] = set()
    cands = candidate_programs(space, extra)
    for arch in cands:
        pid = program_id(arch)
        if pid in seen:
            continue
        seen.add(pid)
        row = program_row(arch)
        if any(cid not in index for cid in row):
            continue
        vec = np.zeros(len(unknowns))
        for cid, n in row.items():
            vec[index[cid]] = n
        if add(vec):
            programs.append((pid, arch))
        if rank == len(unknowns):
            break
    if deep:
        for arch in deep_programs(space, extra):
            pid = program_id(arch)
            if pid not in seen and all(cid in index for cid in program_row(arch)):
                seen.add(pid)
                programs.append((pid, arch))
    design = ProgramDesign(programs, unknowns, rank, len(cands))
    covered = set()
    for _, arch in programs:
        covered.update(program_row(arch))
    design.uncovered = [u for u in unknowns if u not in covered]
    if design.uncovered:
        log.warning("LUT design: %d entries appear in no program (%s ...): they are set by the prior only",
                    len(design.uncovered), ", ".join(design.uncovered[:3]))
    return design
