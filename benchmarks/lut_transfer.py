"""Can a table for one dtype be set from another's with a few programs? An offline study on stored measurements.

The shape design (`easrec.profiling.shape_model`) fits 35 parameters from 60 whole programs. An int8
table of the same space and device differs from the fp32 one mostly by how much faster or slower each
kind of work runs (dynamically quantized matmuls, quantize and dequantize rows, the same softmax). So
here the int8 table keeps the fp32 table's shape model and fits only a few scales on top of it: the
fp32 model's time of each group of features, times one factor per group, fitted by least squares on
relative error from K int8 programs chosen D-optimally on the fp32 model's times (never on an int8
measurement). Groups: by the kind of work ("kind": constants, matmuls, attention mixing, rows), by
component type ("type"), or both ("kind+type").

It is scored on the int8 tables' stored validation subnets (measured whole, never fitted), against the
int8 shape design with the same K programs and with 60. Nothing is measured here.

    .venv/bin/python benchmarks/lut_transfer.py --prior benchmarks/results/lut_default_executorch_fp32_delegated.json \
        --lut benchmarks/results/lut_default_executorch_int8_delegated.json \
        --validation benchmarks/results/lut_default_executorch_int8_delegated_seed1.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from easrec.cost.flops import FlopsCostModel
from easrec.profiling.shape_model import d_optimal, feature_matrix, prior_ms, program_features
from easrec.space import Arch, SearchSpace

from lut_fewer_programs import scores

KINDS = {"1": "const", "overhead": "const", "proj": "matmul", "mm": "matmul", "d": "matmul", "mix": "mix",
         "Ld": "rows", "Lh": "rows", "Lf": "rows"}


def group_of(feature: str, how: str) -> str:
    """The scale group of a shape-model feature ("attention:softmax:proj" → "matmul", "attention:softmax", …)."""
    head, _, last = feature.rpartition(":")
    kind = KINDS[last if head else feature]
    typ = head or feature
    return {"kind": kind, "type": typ, "kind+type": f"{typ}/{kind}"}[how]


def load_programs(path: Path) -> tuple[list[Arch | None], np.ndarray, dict]:
    """(architectures, medians) of a table's measured programs, and the table."""
    table = json.loads(path.read_text())
    progs = list(table["programs"].items())
    archs = [None if pid == "overhead" else Arch.from_dict(rec["arch"]) for pid, rec in progs]
    return archs, np.array([rec["median_ms"] for _, rec in progs]), table


def fit_theta(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least squares on relative error (rows weighed by 1/measured)."""
    w = 1.0 / y
    return np.linalg.lstsq(X * w[:, None], np.ones(len(y)), rcond=None)[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prior", type=Path, required=True, help="the table (e.g. fp32) whose shape model is transferred")
    ap.add_argument("--prior-k", type=int, default=60, help="programs of the prior table its shape model is fitted on (D-optimal)")
    ap.add_argument("--lut", type=Path, required=True, help="the target table (e.g. int8) whose programs are the pool")
    ap.add_argument("--validation", type=Path, nargs="*", default=[], help="more target tables whose validation subnets score it")
    ap.add_argument("--ks", default="8,12,16,20,25,30,40,60")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    p_archs, p_y, p_table = load_programs(args.prior)
    t_archs, t_y, t_table = load_programs(args.lut)
    space = SearchSpace.from_dict(t_table["space"])
    flops = FlopsCostModel(space, t_table["n_items"])
    names = sorted({n for a in p_archs + t_archs for n in program_features(a)})
    PX = feature_matrix([program_features(a) for a in p_archs], names)
    p_prior = np.array([prior_ms(a, FlopsCostModel(SearchSpace.from_dict(p_table["space"]), p_table["n_items"])) for a in p_archs])
    p_idx = d_optimal(PX / p_prior[:, None], min(args.prior_k, len(p_archs)))
    theta_p = fit_theta(PX[p_idx], p_y[p_idx])

    TX = feature_matrix([program_features(a) for a in t_archs], names)
    subnets = []
    for path in [args.lut, *args.validation]:
        for s in json.loads(path.read_text())["validation"]["subnets"]:
            subnets.append((Arch.from_dict(s["arch"]), s["measured_ms"]))
    V = feature_matrix([program_features(a) for a, _ in subnets], names)
    meas = np.array([m for _, m in subnets])
    prior_on_target = scores(V @ theta_p, meas)
    print(f"prior {args.prior.name} ({len(p_idx)} programs) → target {args.lut.name}: {len(t_archs)} programs in the pool, "
          f"{len(subnets)} validation subnets")
    print(f"the prior's model as is on the target: ±10 % {prior_on_target['within_10pct']:.0%}, MAPE {prior_on_target['mape_pct']:.1f} %")
    results = {"prior": str(args.prior), "prior_k": len(p_idx), "lut": str(args.lut), "n_subnets": len(subnets),
               "prior_as_is": prior_on_target, "designs": []}
    print(f"{'design':<22} {'params':>6} {'K':>4} {'±10 %':>7} {'MAPE':>6} {'max %':>6} {'τ':>6}")
    t_prior = np.array([prior_ms(a, flops) for a in t_archs])
    for how in ("kind", "type", "kind+type", "shape (no transfer)"):
        if how.startswith("shape"):
            Z, VZ, S = TX, V, TX / t_prior[:, None]
        else:
            groups = sorted({group_of(n, how) for n in names})
            M = np.zeros((len(names), len(groups)))  # feature → its group's column, weighted by the prior's θ
            for i, n in enumerate(names):
                M[i, groups.index(group_of(n, how))] = theta_p[i]
            Z, VZ = TX @ M, V @ M
            S = Z / np.maximum(Z.sum(1), 1e-9)[:, None]  # chosen on the prior's relative times, not on target measurements
        for k in [int(v) for v in args.ks.split(",")]:
            if k < Z.shape[1] and not how.startswith("shape"):
                continue
            idx = d_optimal(S, k)
            theta = fit_theta(Z[idx], t_y[idx])
            pred = VZ @ theta
            if not np.all(pred > 0):
                print(f"{how:<22} {Z.shape[1]:>6} {k:>4}  non-positive predictions")
                continue
            sc = scores(pred, meas)
            print(f"{how:<22} {Z.shape[1]:>6} {k:>4} {sc['within_10pct']:>7.0%} {sc['mape_pct']:>6.1f} {sc['max_err_pct']:>6.1f} "
                  f"{sc['kendall_tau']:>6.3f}")
            results["designs"].append({"groups": how, "params": int(Z.shape[1]), "k": k, **sc})
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
