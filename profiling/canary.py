"""The canary: a small fixed SASRec graph timed beside every measured graph, to follow the machine's drift."""

from __future__ import annotations

import torch
import torch.nn as nn

from easrec.export.graph import TopKGraph
from easrec.profiling.components import program_module
from easrec.space import Arch, LayerArch


def canary_module() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """The canary: the shipped graph of a small fixed SASRec (L 20, d 16, one 1-head block, 1000 items).

    A whole program runs the same kinds of kernels as the graphs it is timed beside (XNNPACK
    delegates, portable kernels, the runtime's call path); a two-linear MLP only saw XNNPACK's GEMM
    and drifted by 13 % while the graphs did not.
    """
    module, example = program_module(Arch(20, 16, (LayerArch(1, 32),), "softmax", False, 16), 1000, seed=1234)
    return CanaryGraph(module.model, k=module.k).eval(), example


class CanaryGraph(TopKGraph):
    """The canary's graph (a `TopKGraph`, named so that it is told apart from the graphs measured)."""


def drift(start_ms: float, end_ms: float) -> float:
    """Relative change of the canary between the start and the end of a run."""
    return (end_ms - start_ms) / start_ms if start_ms > 0 else 0.0
