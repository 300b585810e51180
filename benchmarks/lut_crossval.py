"""How a latency table's correction is scored: one random half held out, or k-fold cross-validation.

Nothing is measured: this re-scores the subnets a table's validation stored (`validation.subnets`).
For each table and each correction kind it prints

- the **half split** (fit on 25 of 50, score the other 25) over `--splits` different random halves:
  the chosen kind's share within ±10 % on each, and how often each kind is chosen;
- **k-fold cross-validation** (`--folds`, default 5, as `easrec profile validate` now scores): every
  subnet predicted once by a fit on the other folds, over `--splits` fold assignments.

The question it answers: with 50 measured subnets, how much of a "held-out share within ±10 %" is the
choice of the random half, and what the same subnets say when every one of them is held out once.

    .venv/bin/python benchmarks/lut_crossval.py benchmarks/results/lut_default_executorch_fp32.json \
        benchmarks/results/lut_default_executorch_int8_quiet.json benchmarks/results/lut_default_onnxruntime_fp32_deep.json \
        --out benchmarks/results/lut_crossval.json
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from easrec.io import atomic_write_json
from easrec.profiling.corrections import compare_corrections, cross_validate_corrections
from easrec.profiling.scores import folds, split
from easrec.errors import EasrecError
from easrec.profiling.table import LatencyTable
from easrec.profiling.validate import stored_subnets


def stored_rows(path: Path) -> list[dict]:
    """The validation's measured subnets (`stored_subnets`); a missing validation ends the script in one line."""
    try:
        return stored_subnets(LatencyTable.load(path), path)
    except EasrecError as exc:
        sys.exit(str(exc))


def spread(values: list[float]) -> dict:
    """Mean, min and max of a list of shares or errors."""
    return {"mean": float(np.mean(values)), "min": float(np.min(values)), "max": float(np.max(values))}


def rescore(path: Path, n_splits: int, n_folds: int) -> dict:
    """Half-split and k-fold scores of every correction kind on one table's stored subnets."""
    rows = stored_rows(path)
    half_chosen, half_share, half_mape = Counter(), [], []
    cv_chosen, cv_share, cv_mape, cv_tau = Counter(), [], [], []
    per_kind: dict[str, list[float]] = {}
    for seed in range(n_splits):
        fit_idx, test_idx = split(len(rows), seed)
        half = compare_corrections(rows, fit_idx, test_idx)
        t = half["candidates"][half["chosen"]]["test"]
        half_chosen[half["chosen"]] += 1
        half_share.append(t["within_10pct"])
        half_mape.append(t["mape_pct"])
        cv = cross_validate_corrections(rows, folds(len(rows), n_folds, seed))
        t = cv["candidates"][cv["chosen"]]["test"]
        cv_chosen[cv["chosen"]] += 1
        cv_share.append(t["within_10pct"])
        cv_mape.append(t["mape_pct"])
        cv_tau.append(t["kendall_tau"])
        for kind, c in cv["candidates"].items():
            per_kind.setdefault(kind, []).append(c["test"]["within_10pct"])
    seed0 = cross_validate_corrections(rows, folds(len(rows), n_folds, 0))
    return {
        "table": str(path), "subnets": len(rows),
        "half_split": {"chosen": dict(half_chosen), "within_10pct": spread(half_share), "mape_pct": spread(half_mape),
                       "n_held_out": len(split(len(rows), 0)[1])},
        "cross_validation": {"folds": n_folds, "chosen": dict(cv_chosen), "within_10pct": spread(cv_share),
                             "mape_pct": spread(cv_mape), "kendall_tau": spread(cv_tau),
                             "per_kind_within_10pct": {k: spread(v) for k, v in per_kind.items()},
                             "seed0": {"chosen": seed0["chosen"],
                                       "test": seed0["candidates"][seed0["chosen"]]["test"]}},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tables", nargs="+", type=Path, help="validated latency tables (LUT JSON)")
    ap.add_argument("--splits", type=int, default=20, help="random halves / fold assignments to score (default 20)")
    ap.add_argument("--folds", type=int, default=5, help="folds of the cross-validation (default 5)")
    ap.add_argument("--out", type=Path, help="JSON to write")
    args = ap.parse_args()
    if args.splits < 1 or args.folds < 2:
        sys.exit("--splits must be at least 1 and --folds at least 2")
    results = [rescore(p, args.splits, args.folds) for p in args.tables]
    print(f"{'table':48s} | {'half split: chosen kinds':34s} {'±10 % mean (min–max)':>22s} | "
          f"{'5-fold CV: chosen':26s} {'±10 % mean (min–max)':>22s} {'MAPE':>5s} {'τ':>5s}")
    for r in results:
        h, c = r["half_split"], r["cross_validation"]
        hs, cs = h["within_10pct"], c["within_10pct"]
        print(f"{Path(r['table']).name:48s} | {', '.join(f'{k} {v}' for k, v in h['chosen'].items()):34s} "
              f"{100 * hs['mean']:5.1f} % ({100 * hs['min']:.0f}–{100 * hs['max']:.0f}) | "
              f"{', '.join(f'{k} {v}' for k, v in c['chosen'].items()):26s} "
              f"{100 * cs['mean']:5.1f} % ({100 * cs['min']:.0f}–{100 * cs['max']:.0f}) "
              f"{c['mape_pct']['mean']:5.2f} {c['kendall_tau']['mean']:5.3f}")
    print(f"({args.splits} random halves of {results[0]['half_split']['n_held_out']} held-out subnets, and {args.splits} "
          f"assignments of {args.folds} folds with every subnet held out once; nothing re-measured)")
    if args.out:
        atomic_write_json(args.out, {"splits": args.splits, "folds": args.folds,
                                     "command": " ".join([Path(sys.executable).name, *sys.argv]), "tables": results})
        print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
