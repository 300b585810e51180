"""The sweep that chose easrec's SASRec training defaults (ml-100k, RecBole's protocol).

ml-100k from ../shared/datasets/ml-100k, d 64, 2 layers × 2 heads, FFN 256, full-softmax CE, seen items
kept in the ranking (RecBole's convention for sequential models), one seed per configuration.
Configurations are `max_len:dropout:batch:lr:eval_every[:stride]` strings; patience counts evaluations. Each
configuration appends one JSON line to `--out` as soon as it finishes (so a long sweep can be split
across processes and interrupted), with valid and test NDCG@10, steps, seconds to the best model and
the load average.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/sasrec_sweep.py --configs 50:0.2:128:1e-3:0 50:0.5:128:1e-3:0 \
        --out benchmarks/results/sasrec_sweep.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from easrec.data import load_dataset
from easrec.model import SASRec
from easrec.train.evaluate import evaluate_model
from easrec.train.run import sasrec_arch
from easrec.train.trainer import TrainConfig, train_model

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "datasets" / "ml-100k"


def run(spec: str, args: argparse.Namespace) -> dict:
    """Train one configuration and return its record."""
    L, dropout, batch, lr, eval_every, *rest = spec.split(":")
    stride = int(rest[0]) if rest else 0
    data = load_dataset(args.data)
    torch.manual_seed(args.seed)
    model = SASRec(sasrec_arch(int(L), 64, 2, 2, 256), data.n_items, float(dropout))
    cfg = TrainConfig(epochs=args.epochs, batch_size=int(batch), lr=float(lr), patience=args.patience,
                      eval_every=int(eval_every), seed=args.seed, threads=args.threads, keep_seen=True,
                      warmup_steps=args.warmup, stride=stride, targets=args.targets,
                      weight_decay=args.weight_decay, beta2=args.beta2, grad_clip=args.grad_clip,
                      plateau_factor=args.plateau_factor, plateau_evals=args.plateau_evals,
                      schedule=args.schedule, ema=args.ema, precision=args.precision)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    res = train_model(model, data.split(), cfg)
    wall = time.perf_counter() - t0
    test = evaluate_model(model, data.split(), "test", keep_seen=True)
    test_ex = evaluate_model(model, data.split(), "test", keep_seen=False)
    return {"config": spec, "max_len": int(L), "dropout": float(dropout), "batch": int(batch), "lr": float(lr),
            "eval_every": int(eval_every), "stride": stride, "targets": args.targets, "seed": args.seed,
            "weight_decay": args.weight_decay, "beta2": args.beta2, "grad_clip": args.grad_clip,
            "plateau_factor": args.plateau_factor, "plateau_evals": args.plateau_evals, "schedule": args.schedule,
            "ema": args.ema, "precision": args.precision, "threads": args.threads, "valid_curve": [round(h["ndcg@10"], 5) for h in res.history], "valid_ndcg@10": res.best_valid["ndcg@10"],
            "test_ndcg@10": test["ndcg@10"], "test_hr@10": test["hr@10"], "test_mrr@10": test["mrr@10"],
            "test_excl_ndcg@10": test_ex["ndcg@10"], "steps": res.steps, "best_step": res.best_step,
            "epochs": len(res.epoch_seconds), "seconds_to_best": res.seconds_to_best, "wall_seconds": wall,
            "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in os.getloadavg()]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", required=True)
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--patience", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=0)
    ap.add_argument("--targets", choices=["all", "last"], default="all", help="training samples (TrainConfig.targets)")
    ap.add_argument("--weight-decay", type=float, default=TrainConfig.weight_decay)
    ap.add_argument("--beta2", type=float, default=TrainConfig.beta2, help="Adam's second-moment decay (RecBole: 0.999)")
    ap.add_argument("--grad-clip", type=float, default=TrainConfig.grad_clip, help="gradient norm clip, 0 = off (RecBole: off)")
    ap.add_argument("--plateau-factor", type=float, default=TrainConfig.plateau_factor,
                    help="learning-rate factor after every --plateau-evals evaluations without a gain")
    ap.add_argument("--plateau-evals", type=int, default=TrainConfig.plateau_evals)
    ap.add_argument("--schedule", choices=["constant", "cosine"], default=TrainConfig.schedule,
                    help="learning-rate schedule (cosine: to 0 over --epochs)")
    ap.add_argument("--ema", type=float, default=TrainConfig.ema, help="weight average decay per step (0: off)")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default=TrainConfig.precision,
                    help="training precision (TrainConfig.precision)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "sasrec_sweep.jsonl")
    args = ap.parse_args()
    for spec in args.configs:
        rec = run(spec, args)
        with open(args.out, "a") as f:
            f.write(json.dumps(rec) + "\n")
        print(f"{spec:>24}  valid {rec['valid_ndcg@10']:.4f}  test {rec['test_ndcg@10']:.4f}  "
              f"steps {rec['best_step']}/{rec['steps']}  {rec['seconds_to_best']:.0f}s to best  load {rec['load_after']}", flush=True)


if __name__ == "__main__":
    main()
