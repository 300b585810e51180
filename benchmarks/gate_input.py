"""What EASRec's data-aware gates should read: the causal running mean of the history or each position's embedding.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/gate_input.py [--seeds 0,1,2] [--max-len 50] [--d 64]

Same gated SASRec (d 64, 2 layers × 2 heads, FFN 256, gates on every FFN) trained with the default trainer on
ml-100k for each gate input and seed; test NDCG@10 with the whole history excluded. Prints mean and
Student-t 95 % CI over seeds per input and a paired bootstrap 95 % CI over users of the seed-averaged
difference; writes benchmarks/results/gate_input.json. Runs are kept under --work and reused.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

import numpy as np

from easrec.data import data_config, load_dataset
from easrec.io import atomic_write_json
from easrec.model.sasrec import DEFAULT_DROPOUT
from easrec.train.run import read_per_user, sasrec_arch, train_run
from easrec.train.stats import mean_ci_over_seeds, paired_bootstrap
from easrec.train.trainer import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets" / "ml-100k"))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--max-len", type=int, default=50)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--dropout", type=float, default=DEFAULT_DROPOUT)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", type=Path, default=Path("runs/bench_gate_input"))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gate_input.json")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    ds = load_dataset(args.data)
    base = sasrec_arch(args.max_len, args.d, 2, 2, 4 * args.d, gates=True)
    rows, per_user = {}, {}
    for gate_input in ("mean", "position"):
        arch = dataclasses.replace(base, gate_input=gate_input)
        runs = []
        for s in seeds:
            out = args.work / gate_input / f"seed-{s}"
            if not (out / "metrics.json").is_file():
                print(f"train {arch.describe()} seed {s} (load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
                train_run(ds, data_config(args.data), arch, TrainConfig(seed=s, threads=args.threads), out, dropout=args.dropout)
            runs.append(out)
        metrics = [json.loads((r / "metrics.json").read_text()) for r in runs]
        rows[gate_input] = {"arch": arch.describe(), "test_ndcg@10": mean_ci_over_seeds([m["test"]["ndcg@10"] for m in metrics]),
                            "valid_ndcg@10": mean_ci_over_seeds([m["valid"]["ndcg@10"] for m in metrics]),
                            "runs": [str(r) for r in runs]}
        per_user[gate_input] = np.mean([read_per_user(r)["metrics"]["ndcg@10"] for r in runs], axis=0)
    comp = paired_bootstrap(per_user["mean"], per_user["position"])
    print("| gate input | test NDCG@10 (mean [95 % CI] over seeds) | valid NDCG@10 |")
    print("|---|---|---|")
    for k, r in rows.items():
        t = r["test_ndcg@10"]
        ci = f" [{t['ci_low']:.4f}, {t['ci_high']:.4f}]" if t["ci_low"] is not None else " (one seed: no CI)"
        print(f"| {k} | {t['mean']:.4f}{ci} | {r['valid_ndcg@10']['mean']:.4f} |")
    print(f"position − mean: {comp['diff']:+.4f} [{comp['ci_low']:+.4f}, {comp['ci_high']:+.4f}]"
          f"{' (CI includes 0)' if comp['includes_zero'] else ''}")
    atomic_write_json(args.out, {"rows": rows, "position_minus_mean": comp, "seeds": seeds, "command": " ".join(sys.argv),
                                 "load_average": os.getloadavg()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
