"""The search's last step: a short fine-tune of a few finalists decides which one is trained fully.

The supernet's shared weights rank architectures far from the search's own path badly: with them,
SASRec-shaped subnets (identical layers, heads filling d) score 0.022–0.028 validation NDCG@10
below the architecture α chose, yet after two epochs of fine-tuning from the inherited weights an
L 50 one ranks first in 4 of 6 searches on ml-100k and, trained fully, matches or beats both the α
choice and the best hand-scaled SASRec (benchmarks/supernet_ranking.py, benchmarks/README.md). So
the finalists are the α choice and, for every sequence length, up to three SASRec-shaped
architectures of the space that fit the budget: the costliest, and the widest d at its shallowest
and at its deepest fitting depth. The costliest alone prefers depth to width (under the ExecuTorch
int8 table it proposed L 200 d 16 × 3 blocks, 0.05–0.06 validation NDCG@10, while one L 50 d 64
block, which it never proposed, was the best hand-scaled SASRec at R 0.5 and R 0.25). Each is
fine-tuned `epochs` epochs from the inherited weights, and the best on validation is the search's answer.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Callable

from easrec.cost import CostModel
from easrec.data import Split
from easrec.io import atomic_write_json, read_json
from easrec.model import Supernet
from easrec.space import Arch, LayerArch, SearchSpace
from easrec.train.trainer import TrainConfig, train_model

log = logging.getLogger(__name__)

FINALISTS_FILE = "finalists.json"
METRIC = "ndcg@10"


def sasrec_shapes(space: SearchSpace) -> list[Arch]:
    """Every SASRec-shaped architecture of `space`: identical softmax layers, heads filling d, FFN 4d (capped), no gates."""
    out = []
    for L in space.max_lens:
        for d in space.ds:
            ffn = max(f for f in space.ffns if f <= max(4 * d, space.ffns[0]))
            for n in space.depths:
                arch = Arch(L, d, tuple(LayerArch(d // space.head_size, ffn) for _ in range(n)), "softmax", False,
                            space.head_size, space.gate_input)
                if "softmax" in space.attentions and d % space.head_size == 0 and space.contains(arch):
                    out.append(arch)
    return out


def finalists(chosen: Arch | None, cost_model: CostModel, budget: float) -> list[tuple[Arch, str]]:
    """The α choice and, per sequence length, the costliest and the widest (shallowest, deepest) SASRec shapes within `budget`."""
    out = [(chosen, "alpha")]
    listed = {chosen}
    shapes = [a for a in sasrec_shapes(cost_model.space) if cost_model.cost(a) <= budget]
    for L in cost_model.space.max_lens:
        fitting = [a for a in shapes if a.max_len == L]
        if not fitting:
            continue
        widest = [a for a in fitting if a.d == max(s.d for s in fitting)]
        picks = [(max(fitting, key=lambda a: (cost_model.cost(a), a.depth)), "costliest"),
                 (min(widest, key=lambda a: a.depth), "widest, shallowest"),
                 (max(widest, key=lambda a: a.depth), "widest, deepest")]
        for arch, which in picks:
            if arch not in listed:
                listed.add(arch)
                out.append((arch, f"SASRec shape, L {L}, {which}"))
    return out


def choose_finalist(supernet: Supernet, split: Split, candidates: list[tuple[Arch, str]], cfg: TrainConfig, epochs: int,
                    cost_model: CostModel, out_dir: Path | None = None,
                    on_epoch: Callable[[dict], None] | None = None) -> tuple[Arch, list[dict]]:
    """Fine-tune every candidate `epochs` epochs from the supernet's weights; the best on validation wins.

    The supernet is not changed (each candidate trains an extracted copy). With `out_dir`, each
    score is written to `finalists.json` as soon as it is known, and a resumed run trains only the
    finalists it does not find there (scores of another epoch count are not reused).
    `on_epoch` receives each evaluation's record with the candidate's description under "arch".
    """
    if len(candidates) == 1:  # nothing to compare (no SASRec shape fits, or the space has no softmax attention)
        return candidates[0][0], [{"arch": candidates[0][0].describe(), "arch_dict": candidates[0][0].to_dict(),
                                   "why": candidates[0][1], "cost": cost_model.cost(candidates[0][0]), "chosen": True}]
    path = Path(out_dir) / FINALISTS_FILE if out_dir else None
    done: dict[str, dict] = {}
    if path and path.exists():
        saved = read_json(path)
        if saved.get("epochs") == epochs:
            # A finalist's short fine-tune is deterministic (seeded), so a score from an interrupted run stands.
            done = {r["arch"]: r for r in saved.get("rows", [])}
    short = dataclasses.replace(cfg, epochs=epochs, patience=epochs + 1, eval_every=0)
    rows = []
    for arch, why in candidates:
        if arch.describe() in done:
            rows.append({k: v for k, v in done[arch.describe()].items() if k != "chosen"})
            continue
        t0 = time.perf_counter()
        hook = (lambda rec, a=arch.describe(): on_epoch({**rec, "arch": a})) if on_epoch else None
        result = train_model(supernet.extract(arch), split, short, on_epoch=hook)
        rows.append({"arch": arch.describe(), "arch_dict": arch.to_dict(), "why": why, "cost": cost_model.cost(arch),
                     f"valid_{METRIC}": result.best_valid[METRIC], "seconds": time.perf_counter() - t0})
        log.info("finalist %s (%s): valid %s %.4f after %d epochs", arch.describe(), why, METRIC, result.best_valid[METRIC], epochs)
        if path:  # kept after every finalist: an interrupted contest resumes with the next one
            atomic_write_json(path, {"epochs": epochs, "chosen": None, "rows": rows})
    best = max(range(len(rows)), key=lambda i: rows[i][f"valid_{METRIC}"])
    for i, r in enumerate(rows):
        r["chosen"] = i == best
    if path:
        atomic_write_json(path, {"epochs": epochs, "chosen": rows[best]["arch"], "rows": rows})
    return candidates[best][0], rows
