"""Can a latency table be solved from fewer whole programs? An offline study on stored measurements.

The entries design lowers one whole program per unknown table entry (259 for the default space), and
lowering is 95-98 % of a cold build. Here every entry is instead a small linear model of its
component's shape (`easrec.profiling.shape_model`: a constant, the matmul work, the attention mixing,
the elementwise rows per component type), fitted by least squares on relative error from K of the
stored programs, chosen greedily for information (D-optimal, as `easrec profile --design shape`
chooses) or at random. It is scored on the stored
validation subnets of one or more tables (measured whole, never used in the fit), against the
table's own prediction (the per-entry solve from all programs, before any correction).

Nothing is measured: the programs' and subnets' times are the ones the tables stored, on the
canary's scale. So this says how many programs a parametric design needs for the same accuracy, not
what a build with it would measure.

    .venv/bin/python benchmarks/lut_fewer_programs.py --lut benchmarks/results/lut_default_executorch_fp32_delegated.json \
        --validation benchmarks/results/lut_default_executorch_fp32_delegated_seed1.json --ks 40,60,80,120,259
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np

from easrec.cost.flops import FlopsCostModel
from easrec.profiling.scores import kendall_tau
from easrec.profiling.shape_model import d_optimal, feature_matrix, prior_ms, program_features
from easrec.space import Arch, SearchSpace

ROOT = Path(__file__).resolve().parents[1]


def scores(pred: np.ndarray, meas: np.ndarray) -> dict[str, float]:
    """±10 % share, MAPE and Kendall τ of predictions against measurements."""
    err = pred / meas - 1
    return {"within_10pct": float(np.mean(np.abs(err) <= 0.10)), "mape_pct": float(100 * np.mean(np.abs(err))),
            "max_err_pct": float(100 * np.max(np.abs(err))), "kendall_tau": float(kendall_tau(list(pred), list(meas)))}


def affine(pred_fit: np.ndarray, meas_fit: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """The global affine correction fitted on one set of subnets, applied to another's predictions."""
    a, b = np.polyfit(pred_fit, meas_fit, 1)
    return a * pred + b


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lut", type=Path, required=True, help="table whose programs are fitted")
    ap.add_argument("--validation", type=Path, nargs="*", default=[], help="more tables of the same build whose validation subnets score it")
    ap.add_argument("--ks", default="40,60,80,120,259")
    ap.add_argument("--seeds", type=int, default=5, help="random program subsets per K")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    table = json.loads(args.lut.read_text())
    progs = [(pid, rec) for pid, rec in table["programs"].items()]
    archs = [None if pid == "overhead" else Arch.from_dict(rec["arch"]) for pid, rec in progs]
    y = np.array([rec["median_ms"] for _, rec in progs])
    names = sorted({n for a in archs for n in program_features(a)})
    X = feature_matrix([program_features(a) for a in archs], names)

    subnets = []
    for path in [args.lut, *args.validation]:
        for s in json.loads(path.read_text())["validation"]["subnets"]:
            subnets.append((Arch.from_dict(s["arch"]), s["measured_ms"], s["lut_sum_ms"]))
    V = feature_matrix([program_features(a) for a, _, _ in subnets], names)
    meas = np.array([m for _, m, _ in subnets])
    lut_sum = np.array([p for _, _, p in subnets])
    half = np.arange(len(subnets)) % 2 == 0  # affine fitted on even subnets, scored on odd

    print(f"{args.lut.name}: {len(progs)} programs, {len(names)} parameters, {len(subnets)} validation subnets")
    base = scores(lut_sum, meas)
    base_aff = scores(affine(lut_sum[half], meas[half], lut_sum[~half]), meas[~half])
    print(f"{'design':<28} {'K':>4} {'±10 %':>7} {'MAPE':>6} {'τ':>6}   affine on odd half: {'±10 %':>6} {'MAPE':>6}")
    print(f"{'table (per-entry solve)':<28} {len(progs):>4} {base['within_10pct']:>7.0%} {base['mape_pct']:>6.1f} "
          f"{base['kendall_tau']:>6.3f}   {base_aff['within_10pct']:>17.0%} {base_aff['mape_pct']:>6.1f}")
    results = {"lut": str(args.lut), "n_programs": len(progs), "n_params": len(names), "n_subnets": len(subnets),
               "table": base, "table_affine_odd": base_aff, "designs": []}
    # The fit weighs rows by 1/measured (least squares on relative error, as the ±10 % goal counts it).
    # The choice of programs may not read their measurements (a build chooses before it measures): it
    # weighs rows by 1/prior, the FLOPs model's cost at a rough ms per MFLOP plus a per-program constant.
    W = X / y[:, None]
    flops = FlopsCostModel(SearchSpace.from_dict(table["space"]), table["n_items"])
    prior = np.array([prior_ms(a, flops) for a in archs])
    S = X / prior[:, None]
    for k in [int(v) for v in args.ks.split(",")]:
        for design in ("d-optimal", "random"):
            runs = []
            for seed in range(args.seeds if design == "random" else 1):
                rng = random.Random(seed)
                idx = d_optimal(S, k, seed) if design == "d-optimal" else rng.sample(range(len(progs)), min(k, len(progs)))
                theta, *_ = np.linalg.lstsq(W[idx], np.ones(len(idx)), rcond=None)
                pred = V @ theta
                if not np.all(pred > 0):
                    runs.append(None)
                    continue
                sc = scores(pred, meas)
                sc_aff = scores(affine(pred[half], meas[half], pred[~half]), meas[~half])
                runs.append({"seed": seed, "raw": sc, "affine_odd": sc_aff})
            ok = [r for r in runs if r]
            if not ok:
                print(f"{design:<28} {k:>4}  fit gave non-positive predictions")
                continue
            mean = lambda key, sub: float(np.mean([r[sub][key] for r in ok]))  # noqa: E731
            print(f"{design + (f' ({len(ok)} subsets)' if design == 'random' else ''):<28} {k:>4} "
                  f"{mean('within_10pct', 'raw'):>7.0%} {mean('mape_pct', 'raw'):>6.1f} {mean('kendall_tau', 'raw'):>6.3f}   "
                  f"{mean('within_10pct', 'affine_odd'):>17.0%} {mean('mape_pct', 'affine_odd'):>6.1f}")
            results["designs"].append({"design": design, "k": k, "runs": runs})
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
