"""The analytic FLOPs model against torch's own count of the matmuls each component runs."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from easrec.cost import Component, space_components
from easrec.cost.flops import FlopsCostModel
from easrec.profiling.components import component_module
from easrec.space import SearchSpace

SPACE = SearchSpace(max_lens=(10, 20), ds=(16, 32), heads=(1, 2), ffns=(32, 64), depths=(1, 2),
                    attentions=("softmax", "linear"))
N_ITEMS = 100


def counted_mflops(component: Component) -> float:
    """MFLOPs torch.utils.flop_counter counts for the module that runs `component` (the model's own code)."""
    module, inputs = component_module(component, N_ITEMS, SPACE.head_size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(*inputs)
    return counter.get_total_flops() / 1e6


def known_difference(component: Component) -> float:
    """analytic − counted MFLOPs where the model and the flop counter see different work, by design."""
    k = dict(component.key)
    if component.name in ("gates", "last_gates"):
        # The gated FFN's module runs the FFN too; the `gates` entry is what the gates add to it.
        ffn = Component.make("ffn", L=k["L"], d=k["d"], ffn=k["ffn"]) if "L" in k else Component.make(
            "last_ffn", d=k["d"], ffn=k["ffn"])
        return -FlopsCostModel(SPACE, N_ITEMS).component_cost(ffn)
    if component.name == "attention" and k["kind"] == "softmax":
        # The model computes the whole L×L score and mix products and masks them; the model counts the causal half.
        return -2 * k["L"] * k["L"] * k["heads"] * k["hs"] / 1e6
    if component.name in ("attention", "last_attention") and k["kind"] == "linear":
        # The model counts L outer products k_i [v_i, 1]ᵀ and L query reads; the last block runs the
        # sum of the outer products as one matmul and queries once, so torch counts L + 1, not 2L.
        rows = 0 if component.name == "attention" else k["L"] - 1
        # The feature maps' L2 norms (queries and keys) sum their squares with a matmul against ones
        # (`l2_normalize`, so XNNPACK delegates it); torch counts it, the model ignores reductions.
        norm_rows = (2 * k["L"]) if component.name == "attention" else (k["L"] + 1)
        return (2 * rows * k["heads"] * k["hs"] * (k["hs"] + 1) - 2 * norm_rows * k["heads"] * k["hs"]) / 1e6
    return 0.0


@pytest.mark.parametrize("component", space_components(SPACE), ids=lambda c: c.id())
def test_flops_model_matches_torch_flop_counter(component):
    analytic = FlopsCostModel(SPACE, N_ITEMS).component_cost(component)
    assert analytic == pytest.approx(counted_mflops(component) + known_difference(component), rel=1e-9, abs=1e-12)
