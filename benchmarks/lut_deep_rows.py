"""Do three- and four-block programs make a latency table more accurate? One build, two solves.

Builds the default-space table with `deep=True` (the basis of one- and two-block programs plus
`deep_programs` as extra rows), validates it on N random subnets, then solves the entries a second
time from the same program measurements without the deep rows and scores both tables on the same
subnet measurements, with every correction scored by 5-fold cross-validation (each subnet held out once).
The comparison is paired: nothing is measured twice, so session drift cannot favour either solve.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/lut_deep_rows.py --runtime onnxruntime --subnets 50 \
        --out benchmarks/results/lut_deep_rows_onnxruntime_fp32.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def compare_solves(data: dict, space, extra, n_items: int, seed: int) -> tuple[dict, dict]:
    """Score the table's own entries and entries solved from its basis programs only, on its stored validation."""
    from easrec.profiling.components import design_programs
    from easrec.profiling.solve import solve_entries
    from easrec.profiling.table import LatencyTable
    from easrec.profiling.validate import summarize_rows
    from easrec.space import Arch

    rows_deep = [dict(r) for r in data["validation"]["subnets"]]
    basis = design_programs(space, extra)
    entries, _ = solve_entries(basis, data["programs"], space, n_items)
    basis_data = copy.deepcopy(data)
    basis_data["entries"] = entries
    basis_table = LatencyTable(basis_data)
    rows_basis = []
    for row in rows_deep:
        arch = Arch.from_dict(row["arch"])
        rows_basis.append({**row, "lut_sum_ms": basis_table.raw_cost(arch), "type_sums": basis_table.type_sums(arch)})
    scored = {"deep rows": summarize_rows(rows_deep, seed), "basis only": summarize_rows(rows_basis, seed)}
    return scored, {"deep rows": rows_deep, "basis only": rows_basis}


def by_depth(rows: list[dict], summary: dict) -> dict[str, float]:
    """Mean corrected prediction / measurement of the subnets of each depth."""
    import numpy as np

    from easrec.profiling.corrections import block_counts, predict, type_matrix
    params = summary["corrections"]["candidates"][summary["corrections"]["chosen"]]["params"]
    pred = predict(params, type_matrix(rows), block_counts(rows))
    out: dict[str, float] = {}
    for depth in (1, 2, 3, 4):
        idx = [i for i, r in enumerate(rows) if len(r["arch"]["layers"]) == depth]
        if idx:
            out[str(depth)] = float(np.mean([pred[i] / rows[i]["measured_ms"] for i in idx]))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runtime", default="onnxruntime")
    ap.add_argument("--dtype", default="fp32")
    ap.add_argument("--subnets", type=int, default=50)
    ap.add_argument("--items", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0, help="validation subnets' seed")
    ap.add_argument("--table", type=Path, default=None, help="where the deep table is built (default: results/lut_default_<rt>_<dtype>_deep.json)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--no-deep", action="store_true", help="build the basis only (then both solves are the same table)")
    args = ap.parse_args(argv)

    from easrec.devices import get_device
    from easrec.profiling.lut import build_lut
    from easrec.profiling.protocol import LoadMonitor
    from easrec.profiling.validate import validate_lut
    from easrec.space import SearchSpace, reference_arch

    name = f"{args.runtime}_{args.dtype}"
    table_path = args.table or RESULTS / f"lut_default_{name}_deep.json"
    out = args.out or RESULTS / f"lut_deep_rows_{name}.json"
    space, extra = SearchSpace(), [reference_arch()]
    device = get_device("cpu", threads=1)

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    monitor = LoadMonitor()
    t0 = time.perf_counter()
    table = build_lut(device, space, args.runtime, args.dtype, args.items, 1, table_path, extra=extra, deep=not args.no_deep,
                      progress=lambda d, n, w: log(f"build {d}/{n} {w}") if d == n or d % 50 == 0 else None)
    build_s = time.perf_counter() - t0
    log(f"built {table_path}: {len(table.data['programs'])} programs, {build_s:.0f} s")
    t0 = time.perf_counter()
    validation = validate_lut(table_path, device, args.subnets, seed=args.seed)
    val_s = time.perf_counter() - t0
    data = json.loads(table_path.read_text())

    scored, rows = compare_solves(data, space, extra, args.items, args.seed)
    report = {"runtime": args.runtime, "dtype": args.dtype, "subnets": args.subnets, "seed": args.seed,
              "programs": len(data["programs"]), "build_s": build_s,
              "validation_s": val_s, "load_average": monitor.summary(), "noise_floor": validation.get("noise_floor"),
              "results": {}}
    print(f"\n{name}, {args.subnets} subnets (5-fold cross-validated), load {monitor.summary()}")
    print(f"{'solve':<12} {'correction':<14} {'±10 %':>6} {'MAPE':>6} {'tau':>5}  pred/meas by depth")
    for label, summary in scored.items():
        chosen = summary["corrections"]["chosen"]
        test = summary["corrections"]["candidates"][chosen]["test"]
        depth = by_depth(rows[label], summary)
        report["results"][label] = {"chosen": chosen, "test": test, "by_depth": depth,
                                    "candidates": {k: v["test"] for k, v in summary["corrections"]["candidates"].items()}}
        print(f"{label:<12} {chosen:<14} {100 * test['within_10pct']:>5.0f}% {test['mape_pct']:>5.1f}% {test['kendall_tau']:>5.2f}  "
              + " ".join(f"{k}:{v:.3f}" for k, v in depth.items()))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=1))
    os.replace(tmp, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
