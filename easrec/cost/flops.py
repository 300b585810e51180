"""Analytic cost: multiply-accumulates (reported as MFLOPs = 2·MACs/1e6) per component, batch 1."""

from __future__ import annotations

from easrec.cost import Component, CostModel
from easrec.space import SearchSpace


class FlopsCostModel(CostModel):
    """FLOPs of one inference (batch 1, newest position scored against the whole catalogue)."""

    unit = "MFLOPs"

    def __init__(self, space: SearchSpace, n_items: int):
        self.space = space
        self.n_items = n_items

    def component_cost(self, component: Component) -> float:
        """MFLOPs of one component (matmuls and the attention products; elementwise ops ignored)."""
        k = dict(component.key)
        name = component.name
        macs = 0.0
        if name == "embedding" or name == "overhead":
            macs = 0.0
        elif name in ("attention", "last_attention"):
            L, d, hs = k["L"], k["d"], k["hs"]
            inner = k["heads"] * hs
            q_rows = 1 if name == "last_attention" else L
            proj = (2 * L + q_rows) * d * inner + q_rows * inner * d  # k, v over L; q and o over the queried rows
            if k["kind"] == "softmax":
                # q·kᵀ and att·v; causal, so a full query block needs about half of L² each.
                mix = 2 * L * inner if name == "last_attention" else L * L * inner
            else:
                # Running sums of k vᵀ and each query's read of them; v carries a column of ones
                # that gives the normaliser in the same products (hs + 1).
                mix = 2 * L * inner * (hs + 1)
            macs = proj + mix
        elif name in ("ffn", "last_ffn"):
            rows = k.get("L", 1) if name == "ffn" else 1
            macs = 2 * rows * k["d"] * k["ffn"]
        elif name in ("gates", "last_gates"):
            rows = k.get("L", 1) if name == "gates" else 1
            hidden = 16
            macs = rows * (2 * k["d"] * hidden + hidden * k["ffn"] + hidden * k["d"])
        elif name == "scoring":
            macs = k["d"] * (self.n_items + 1)
        return 2.0 * macs / 1e6

    def fingerprint(self) -> dict:
        """Identity of this cost model (unit and what it was computed for)."""
        return {"kind": "flops", "n_items": self.n_items, "space": self.space.hash()}
