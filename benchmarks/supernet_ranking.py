"""Can the searched supernet's shared weights rank architectures off the search's own path?

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/supernet_ranking.py [--work runs/bench_search_windows] \
        [--ratios 0.5,0.25] [--seeds 0,1,2]

Reads the finished searches of `benchmarks/search_ml100k.py` (their `search_checkpoint.pt`) and scores, with
the supernet's weights as the search left them (no training), validation NDCG@10 of the subnet the search
chose and of every SASRec-shaped architecture of the search space that fits the same budget (L × d × 1–4
identical layers, heads of the space's head size filling d, FFN 4d capped at the space's widest, gates on
and off). If SASRec-shaped candidates scored close to the chosen subnet here, the search's final choice
could include them; the script measures whether it can. With `--finetune-epochs E` it then fine-tunes,
from the inherited weights, the chosen subnet and the costliest SASRec shape that fits per sequence length
for E epochs each (window training, the benchmark's trainer) and compares them again on validation: does
a short fine-tune per candidate rank them as full training does? Prints a table and writes
benchmarks/results/supernet_ranking.json (or `--out`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from easrec.data import load_dataset
from easrec.io import atomic_write_json
from easrec.model.sasrec import DEFAULT_DROPOUT
from easrec.model.supernet import Supernet
from easrec.search.run import load_cost_model, resolve_budget
from easrec.space import Arch, LayerArch, SearchSpace
from easrec.train.checkpoint import load_torch
from easrec.train.evaluate import evaluate_model
from easrec.train.trainer import TrainConfig, train_model

ROOT = Path(__file__).resolve().parents[1]
METRIC = "ndcg@10"


def sasrec_shaped(space: SearchSpace) -> list[Arch]:
    """Every SASRec-shaped architecture of `space`: identical layers, heads filling d, FFN 4d (capped)."""
    out = []
    for L in space.max_lens:
        for d in space.ds:
            heads = d // space.head_size
            ffn = max(f for f in space.ffns if f <= max(4 * d, min(space.ffns)))
            for n in space.depths:
                for gates in (False, True):
                    arch = Arch(L, d, tuple(LayerArch(heads, ffn) for _ in range(n)), "softmax", gates, space.head_size)
                    if space.contains(arch):
                        out.append(arch)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets" / "ml-100k"))
    ap.add_argument("--work", type=Path, default=Path("runs/bench_search_windows"))
    ap.add_argument("--ratios", default="0.5,0.25")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--finetune-epochs", type=int, default=0, help="also fine-tune a few candidates this many epochs")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "supernet_ranking.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    ds = load_dataset(args.data)
    split = ds.split()
    space = SearchSpace()
    cm = load_cost_model(space, ds.n_items, None)
    rows = []
    for ratio in map(float, args.ratios.split(",")):
        budget = resolve_budget(cm, ratio=ratio)
        shaped = [a for a in sasrec_shaped(space) if cm.cost(a) <= budget]
        for seed in map(int, args.seeds.split(",")):
            run = args.work / f"r{ratio}/search/seed-{seed}"
            if not (run / "search_checkpoint.pt").is_file():
                print(f"{run}: no search checkpoint; run benchmarks/search_ml100k.py first", file=sys.stderr)
                return 2
            supernet = Supernet(space, ds.n_items, DEFAULT_DROPOUT)
            supernet.load_state_dict(load_torch(run / "search_checkpoint.pt")["supernet"])
            chosen = Arch.from_dict(json.loads((run / "arch.json").read_text()))
            scores = {a.describe(): evaluate_model(supernet, split, "valid", active=a)[METRIC] for a in [chosen, *shaped]}
            best = max((a for a in shaped), key=lambda a: scores[a.describe()])
            tuned = {}
            if args.finetune_epochs > 0:
                per_len = [max((a for a in shaped if a.max_len == L and not a.gates), key=cm.cost, default=None)
                           for L in space.max_lens]
                for a in [chosen, *[a for a in per_len if a is not None]]:
                    cfg = TrainConfig(epochs=args.finetune_epochs, batch_size=128, targets="all", patience=args.finetune_epochs + 1,
                                      seed=seed, threads=1)
                    t0 = time.perf_counter()
                    result = train_model(supernet.extract(a), split, cfg)
                    tuned[a.describe()] = {"valid": result.best_valid[METRIC], "cost_share": cm.cost(a) / budget,
                                           "seconds": time.perf_counter() - t0}
                    print(f"R {ratio} seed {seed}: {a.describe()} after {args.finetune_epochs} epochs: valid "
                          f"{result.best_valid[METRIC]:.4f} ({cm.cost(a) / budget:.0%} of the budget)", file=sys.stderr, flush=True)
            rows.append({"ratio": ratio, "seed": seed, "chosen": chosen.describe(), "chosen_valid": scores[chosen.describe()],
                         "best_shaped": best.describe(), "best_shaped_valid": scores[best.describe()],
                         "best_shaped_cost_share": cm.cost(best) / budget, "shaped_fitting": len(shaped),
                         "shaped_valid_range": [min(scores[a.describe()] for a in shaped), max(scores[a.describe()] for a in shaped)],
                         "scores": scores, "finetuned": tuned})
    print("| R | seed | chosen subnet (valid, shared weights) | best SASRec-shaped that fits (valid, share of budget) | SASRec-shaped fitting |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['ratio']} | {r['seed']} | {r['chosen']} ({r['chosen_valid']:.4f}) | {r['best_shaped']} "
              f"({r['best_shaped_valid']:.4f}, {r['best_shaped_cost_share']:.0%}) | {r['shaped_fitting']} |")
    if args.finetune_epochs > 0:
        print(f"\nafter {args.finetune_epochs} fine-tune epochs from the inherited weights (valid {METRIC}):")
        for r in rows:
            ranked = sorted(r["finetuned"].items(), key=lambda kv: -kv[1]["valid"])
            print(f"R {r['ratio']} seed {r['seed']}: " + " > ".join(f"{k} {v['valid']:.4f}" for k, v in ranked))
    gap = [r["chosen_valid"] - r["best_shaped_valid"] for r in rows]
    print(f"chosen - best SASRec-shaped: mean {np.mean(gap):+.4f}, min {min(gap):+.4f}")
    atomic_write_json(args.out, {"rows": rows, "command": " ".join(sys.argv), "work": str(args.work),
                                 "load_average": os.getloadavg()[0], "date": time.strftime("%Y-%m-%d %H:%M")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
