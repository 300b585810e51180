"""Searched subnets vs SASRec on ml-100k: accuracy kept, cost against budget, wall time.

    python benchmarks/search_ml100k.py [--lut lut.json] [--ratios 0.5,0.25] [--quick]

For each budget ratio R (× the cost of the reference SASRec, L200 d64 2×2 heads FFN 256), runs the
EASRec search with the dynamic constraint and gates, then the ablations (gates off; the paper's
constraint) at the same budget, and compares each fine-tuned subnet's test NDCG@10 (full ranking,
seen items excluded) with the reference SASRec trained in the same run. Prints a table and writes
benchmarks/results/search_ml100k.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from easrec.data import data_config, load_dataset
from easrec.errors import atomic_write_json
from easrec.search.gates import GatesConfig
from easrec.search.run import load_cost_model, resolve_budget, search_run
from easrec.space import SearchSpace, reference_arch
from easrec.train.run import train_run
from easrec.train.trainer import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets" / "ml-100k"))
    ap.add_argument("--lut", type=Path, help="latency LUT (default: analytic FLOPs)")
    ap.add_argument("--ratios", default="0.5,0.25")
    ap.add_argument("--search-epochs", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--patience", type=int, default=10)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ablations", default="no-gates,paper", help="comma list of no-gates, paper (empty for none); run at the first ratio")
    ap.add_argument("--work", type=Path, default=Path("runs/bench_search"))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "search_ml100k.json")
    ap.add_argument("--quick", action="store_true", help="a few epochs only (smoke test)")
    args = ap.parse_args()
    if args.quick:
        args.search_epochs, args.epochs, args.patience = 2, 3, 2
    torch.set_num_threads(args.threads)
    ds = load_dataset(args.data)
    data_cfg = data_config(args.data)
    ft = TrainConfig(epochs=args.epochs, patience=args.patience, lr=args.lr, threads=args.threads)

    t0 = time.perf_counter()
    base = train_run(ds, data_cfg, reference_arch(), ft, args.work / "sasrec")
    base_seconds = time.perf_counter() - t0
    base_ndcg = base["test"]["ndcg@10"]
    rows = [{"variant": "SASRec (reference)", "ratio": 1.0, "arch": "L200 d64 [2h/256, 2h/256] softmax",
             "ndcg@10": base_ndcg, "hr@10": base["test"]["hr@10"], "kept": 1.0, "cost": None, "budget": None,
             "seconds": base_seconds}]
    print(f"SASRec: NDCG@10 {base_ndcg:.4f} in {base_seconds:.0f} s", file=sys.stderr)
    variants = [("EASRec (gates, dynamic)", {})]
    for ab in filter(None, args.ablations.split(",")):
        variants.append({"no-gates": ("ablation: gates off", {"gates": False}),
                         "paper": ("ablation: paper constraint", {"constraint": "paper"})}[ab])
    for n, ratio in enumerate(float(r) for r in args.ratios.split(",")):
        for name, opt in variants if n == 0 else variants[:1]:
            space = SearchSpace(gates=opt.get("gates", True))
            cm = load_cost_model(space, ds.n_items, args.lut)
            budget = resolve_budget(cm, ratio=ratio)
            g = GatesConfig(epochs=args.search_epochs, lr=args.lr, constraint=opt.get("constraint", "dynamic"), threads=args.threads)
            tag = f"r{ratio}-{name.split(':')[-1].strip().replace(' ', '-').replace('(', '').replace(')', '').replace(',', '')}"
            t = time.perf_counter()
            m = search_run(ds, data_cfg, args.work / tag, cost_model=cm, budget=budget, gates_cfg=g, finetune=ft)
            seconds = time.perf_counter() - t
            rows.append({"variant": name, "ratio": ratio, "arch": m["arch_description"], "ndcg@10": m["test"]["ndcg@10"],
                         "hr@10": m["test"]["hr@10"], "kept": m["test"]["ndcg@10"] / base_ndcg, "cost": m["predicted_cost"],
                         "budget": budget, "unit": m["unit"], "within_budget": m["predicted_cost"] <= budget,
                         "seconds": seconds, "time_vs_sasrec": seconds / base_seconds,
                         "search_seconds": m["search_seconds"], "finetune_seconds": m["finetune_seconds"]})
            print(json.dumps(rows[-1]), file=sys.stderr)
    header = f"| variant | R | architecture | NDCG@10 | kept | cost / budget ({rows[-1].get('unit', '')}) | time × SASRec |"
    print(header)
    print("|" + "---|" * 7)
    for r in rows:
        cb = "–" if r["cost"] is None else f"{r['cost']:.3g} / {r['budget']:.3g}"
        tx = "1.0" if r["cost"] is None else f"{r['time_vs_sasrec']:.2f}"
        print(f"| {r['variant']} | {r['ratio']} | {r['arch']} | {r['ndcg@10']:.4f} | {r['kept']:.1%} | {cb} | {tx} |")
    atomic_write_json(args.out, {"rows": rows, "command": " ".join(sys.argv), "threads": args.threads,
                                 "load_average": os.getloadavg(), "cost_model": str(args.lut or "flops")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
