"""Random whole subnets for validation: sampled from a space, extracted from a seeded supernet, in the shipped graph."""

from __future__ import annotations

import random
from typing import Any

import torch

from easrec.export.graph import TopKGraph
from easrec.model.supernet import Supernet
from easrec.profiling.components import TOP_K, padded_ids
from easrec.space import Arch, SearchSpace

_SUPERNETS: dict[tuple, Any] = {}


def subnet_module(space_dict: dict, n_items: int, arch_dict: dict, seed: int = 0) -> tuple[TopKGraph, tuple[torch.Tensor]]:
    """(TopKGraph of the subnet `arch` extracted from a seeded supernet, example padded ids)."""
    space = SearchSpace.from_dict(space_dict)
    key = (space.hash(), n_items, seed)
    if key not in _SUPERNETS:
        torch.manual_seed(seed)
        _SUPERNETS.clear()
        _SUPERNETS[key] = Supernet(space, n_items).eval()
    arch = Arch.from_dict(arch_dict)
    sub = _SUPERNETS[key].extract(arch).eval()
    graph = TopKGraph(sub, k=min(TOP_K, n_items)).eval()
    return graph, (padded_ids(arch.max_len, n_items, seed=seed),)


def sample_archs(space, n: int, seed: int = 0) -> list[Arch]:
    """`n` distinct random architectures of `space` (fewer if the space is smaller)."""
    rng = random.Random(seed)
    seen: dict[str, Arch] = {}
    tries = 0
    while len(seen) < n and tries < 50 * n:
        arch = space.sample(rng)
        seen.setdefault(arch.hash(), arch)
        tries += 1
    return list(seen.values())
