"""The canary: a small fixed SASRec graph timed beside every measured graph, to follow the machine's drift."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from easrec.export.graph import TopKGraph
from easrec.profiling.components import program_module
from easrec.space import Arch, LayerArch, SearchSpace


SMALL = Arch(20, 16, (LayerArch(1, 32),), "softmax", False, 16)  # the canary of tables without `canary_spec`
SMALL_ITEMS = 1000


def canary_spec(space: SearchSpace, n_items: int) -> dict[str, Any]:
    """The canary of a new table: a mid-size SASRec of its own space at its own catalogue size.

    Why not the small fixed graph older tables use (L 20, d 16, one block, 1000 items, ~0.03-0.05 ms,
    mostly call overhead): across four sessions of the same 19 ExecuTorch fp32 files it moved unlike
    them (0.52-0.93x its build time while they ran 0.73-0.82x their predictions), and dividing by it
    spread the files' values 40 % on the mean against 28 % raw; divided by any one mid-size file of the
    same runs (0.14-0.55 ms) instead, 7-10 % (benchmarks/README.md, budget check).
    """
    L = space.max_lens[len(space.max_lens) // 2]
    d = space.ds[(len(space.ds) - 1) // 2]
    fitting = [h for h in space.heads if h * space.head_size <= d] or [space.heads[0]]
    heads = fitting[-1]
    ffn = min(space.ffns, key=lambda f: abs(f - 4 * d))
    depth = max([k for k in space.depths if k <= 2] or [space.depths[0]])
    attention = "softmax" if "softmax" in space.attentions else space.attentions[0]
    arch = Arch(L, d, tuple(LayerArch(heads, ffn) for _ in range(depth)), attention, False, space.head_size)
    return {"arch": arch.to_dict(), "n_items": int(n_items)}


def canary_module(spec: dict[str, Any] | None = None) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """The canary: the shipped graph of a fixed SASRec, `spec` (`canary_spec`) or, for a table built
    before specs existed, the small one (L 20, d 16, one 1-head block, 1000 items).

    A whole program runs the same kinds of kernels as the graphs it is timed beside (XNNPACK
    delegates, portable kernels, the runtime's call path); a two-linear MLP only saw XNNPACK's GEMM
    and drifted by 13 % while the graphs did not.
    """
    arch, n_items = (SMALL, SMALL_ITEMS) if spec is None else (Arch.from_dict(spec["arch"]), int(spec["n_items"]))
    module, example = program_module(arch, n_items, seed=1234)
    return CanaryGraph(module.model, k=module.k).eval(), example


def canary_key(spec: dict[str, Any] | None) -> str:
    """The lowered canary's file key: one file per canary."""
    if spec is None:
        return "canary"
    return f"canary-{Arch.from_dict(spec['arch']).hash()}-{int(spec['n_items'])}"


class CanaryGraph(TopKGraph):
    """The canary's graph (a `TopKGraph`, named so that it is told apart from the graphs measured)."""


def drift(start_ms: float, end_ms: float) -> float:
    """Relative change of the canary between the start and the end of a run."""
    return (end_ms - start_ms) / start_ms if start_ms > 0 else 0.0
