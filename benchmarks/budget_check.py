"""Do architectures that the latency table says fit a budget run within it once exported? (issue 11, goal 3)

For each budget ratio R the budget is R × the table's corrected prediction of the reference SASRec (as
`easrec search --budget-ratio` and `easrec run` compute it). The architectures checked are the ones the
search's last step can return without training anything: per sequence length, the costliest SASRec
shape that the table says fits (`easrec.search.finalists`). α's own choice needs a trained supernet and
is not covered here. Each architecture is exported with random weights (latency does not depend on the
values) as the same top-k graph `easrec export` writes, in the table's runtime and precision, and timed
by `easrec bench`'s function in `--rounds` interleaved rounds (random order per round, median of the
rounds' medians), so every ratio below is measured under the same load. The table's n_items is used as
the catalogue size.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/budget_check.py \
        --lut benchmarks/results/lut_default_executorch_fp32.json --ratios 0.3 0.5 0.7 \
        --out benchmarks/results/budget_check_default_executorch_fp32.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lut", type=Path, default=RESULTS / "lut_default_executorch_fp32.json")
    ap.add_argument("--ratios", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=100, help="runs per artifact per round")
    ap.add_argument("--out", type=Path, default=RESULTS / "budget_check.json")
    args = ap.parse_args()

    from easrec.export import export_model
    from easrec.export.bench import bench_artifact
    from easrec.model import SASRec
    from easrec.profiling.table import LatencyTable
    from easrec.search.finalists import finalists
    from easrec.search.run import resolve_budget
    from easrec.space import reference_arch

    torch.set_num_threads(1)
    table = LatencyTable.load(args.lut)
    runtime, dtype = table.device.get("runtime", "executorch"), table.device.get("dtype", "fp32")
    fmt = "executorch" if runtime == "executorch" else "onnx"
    quantize = "int8" if dtype == "int8" else "none"
    reference = reference_arch()
    archs: dict[str, object] = {reference.hash(): reference}
    checks = []
    for ratio in args.ratios:
        budget = resolve_budget(table, ratio=ratio, reference=reference)
        for arch, why in finalists(None, table, budget)[1:]:
            archs[arch.hash()] = arch
            checks.append({"ratio": ratio, "budget_ms": budget, "arch": arch.describe(), "hash": arch.hash(), "why": why,
                           "predicted_ms": table.cost(arch)})
    work = Path(tempfile.mkdtemp(prefix="budget_check_"))
    paths = {}
    t0 = time.perf_counter()
    for h, arch in archs.items():
        torch.manual_seed(0)
        model = SASRec(arch, table.n_items).eval()
        paths[h] = work / f"{h}.{'pte' if fmt == 'executorch' else 'onnx'}"
        export_model(model, paths[h], fmt, quantize=quantize)
    lowering_s = time.perf_counter() - t0
    medians: dict[str, list[float]] = {h: [] for h in archs}
    loads = []
    rng = random.Random(0)
    for _ in range(args.rounds):
        order = list(archs)
        rng.shuffle(order)
        for h in order:
            medians[h].append(bench_artifact(paths[h], "cpu", runs=args.runs, threads=1)["median_ms"])
        loads.append(os.getloadavg()[0])
    measured = {h: statistics.median(v) for h, v in medians.items()}
    ref_pred = table.cost(reference)
    print(f"reference {reference.describe()}: predicted {ref_pred:.3f} ms, measured {measured[reference.hash()]:.3f} ms "
          f"(measured / predicted {measured[reference.hash()] / ref_pred:.2f}); load {min(loads):.2f}–{max(loads):.2f}")
    print(f"{'R':>4}  {'architecture':<44} {'predicted':>9} {'budget':>8} {'measured':>8} {'meas/budget':>11} {'meas/pred':>9}")
    for c in checks:
        c["measured_ms"] = measured[c["hash"]]
        c["measured_over_budget"] = c["measured_ms"] / c["budget_ms"]
        c["measured_over_predicted"] = c["measured_ms"] / c["predicted_ms"]
        c["round_medians_ms"] = medians[c["hash"]]
        print(f"{c['ratio']:>4}  {c['arch']:<44} {c['predicted_ms']:>9.3f} {c['budget_ms']:>8.3f} {c['measured_ms']:>8.3f} "
              f"{c['measured_over_budget']:>11.2f} {c['measured_over_predicted']:>9.2f}")
    within = sum(c["measured_over_budget"] <= 1.05 for c in checks)
    print(f"{within} of {len(checks)} within 1.05 × budget")
    out = {"lut": str(args.lut), "runtime": runtime, "dtype": dtype, "n_items": table.n_items, "rounds": args.rounds,
           "runs": args.runs, "reference": {"arch": reference.describe(), "predicted_ms": ref_pred,
                                            "measured_ms": measured[reference.hash()]},
           "checks": checks, "within_1.05": within, "lowering_seconds": lowering_s, "load_average": loads,
           "measured_at": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
