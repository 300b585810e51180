"""Native runner (runner/, C++) vs the Python ExecuTorch runtime on the same `.pte`, batch 1, 1 thread.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/native_runner.py [--pte FILE ...] [--rounds 7]

Without --pte, exports three SASRecs with random weights (latency does not depend on the weights):
the reference (L 200, d 64, 2 layers of 2 heads / FFN 256) and two small ones, all over ml-100k's
1,682-item catalogue, fp32, XNNPACK. Builds the runner with `easrec.devices.native_runner`.

Protocol, per model: both sides run the same history (newest last, left padded) in interleaved
rounds (the order alternates every round, so drifting machine load hits both alike). A native
round is one process: `warmup` warm-ups, then `iterations` timed set_input + execute. A Python
round, in this process with the program loaded once: `warmup` warm-ups, then `iterations` timed
`Method.execute([ids])` (what `easrec bench` times). Reported: the median of every timed iteration
per side, the ratio native / Python, the median of the per-round ratios, and the 1-minute load
average before and after. Also checks that both give the same top-k. Writes
benchmarks/results/native_runner.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
N_ITEMS = 1682  # ml-100k's catalogue


def export_models(out: Path) -> list[tuple[str, Path]]:
    """The three benchmark artifacts (random weights, fp32 XNNPACK, top-10 graph)."""
    import torch

    from easrec.export import export_model
    from easrec.model import SASRec
    from easrec.space import Arch, LayerArch, reference_arch

    archs = [
        ("reference L200 d64 2x[2h/256]", reference_arch()),
        ("L50 d32 2x[2h/128]", Arch(max_len=50, d=32, layers=(LayerArch(2, 128), LayerArch(2, 128)), head_size=16)),
        ("L20 d16 1x[1h/128]", Arch(max_len=20, d=16, layers=(LayerArch(1, 128),), head_size=16)),
    ]
    models = []
    for k, (name, arch) in enumerate(archs):
        torch.manual_seed(k)
        path = out / f"model{k}.pte"
        t0 = time.perf_counter()
        export_model(SASRec(arch, N_ITEMS, dropout=0.0).eval(), path, "executorch", k=10)
        print(f"exported {name} in {time.perf_counter() - t0:.0f} s", flush=True)
        models.append((name, path))
    return models


def python_round(runner, prepared, warmup: int, iterations: int) -> list[float]:
    """One Python round: warm-ups, then `iterations` timed calls (ms)."""
    for _ in range(warmup):
        runner.call(prepared)
    times = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        runner.call(prepared)
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def bench_model(name: str, pte: Path, binary: Path, rounds: int, warmup: int, iterations: int) -> dict:
    """Interleaved native / Python rounds on one artifact; the figures of one table row."""
    from easrec.devices.native_runner import run_runner
    from easrec.devices.runners import load_runner

    runner = load_runner(pte, threads=1)
    window = runner.input_specs[0][1][1]
    history = [int(i) for i in np.random.default_rng(0).integers(1, N_ITEMS + 1, size=min(window, 30))]
    ids = np.zeros((1, window), dtype=np.int64)
    ids[0, -len(history):] = history
    prepared = runner.prepare([ids])
    py_items = runner._to_numpy(runner.call(prepared))[0][0].tolist()
    native, python, ratios = [], [], []
    same_topk = True
    load_before = os.getloadavg()
    for r in range(rounds):
        order = ("native", "python") if r % 2 == 0 else ("python", "native")
        got = {}
        for side in order:
            if side == "native":
                out = run_runner(pte, history, binary=binary, warmup=warmup, iterations=iterations, threads=1)
                got[side] = out["iterations_ms"]
                same_topk &= [i for i, _ in out["topk"]] == py_items
            else:
                got[side] = python_round(runner, prepared, warmup, iterations)
        native += got["native"]
        python += got["python"]
        ratios.append(statistics.median(got["native"]) / statistics.median(got["python"]))
    load_after = os.getloadavg()
    med_n, med_p = statistics.median(native), statistics.median(python)
    return {
        "model": name, "pte": str(pte), "size_bytes": pte.stat().st_size, "window": window,
        "native_median_ms": med_n, "python_median_ms": med_p, "ratio": med_n / med_p,
        "native_p10_ms": float(np.percentile(native, 10)), "python_p10_ms": float(np.percentile(python, 10)),
        "round_ratios": ratios, "median_round_ratio": statistics.median(ratios), "same_topk": same_topk,
        "samples_per_side": len(native), "loadavg_before": load_before, "loadavg_after": load_after,
    }


def main() -> int:
    """Build the runner, export (or take) the artifacts, time both sides, print the table, write JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pte", nargs="*", type=Path, help="artifacts to time (default: export the three models)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/native_runner.json")
    args = ap.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from easrec.devices.base import cpu_model
    from easrec.devices.native_runner import build_runner, read_build_record

    binary = build_runner(jobs=2)
    with tempfile.TemporaryDirectory(prefix="easrec-native-bench-") as tmp:
        models = [(p.name, p) for p in args.pte] if args.pte else export_models(Path(tmp))
        rows = [bench_model(name, path, binary, args.rounds, args.warmup, args.iterations) for name, path in models]
    print("\n| model | .pte KiB | native median ms | Python median ms | native / Python | median of round ratios | same top-k | load 1 min before / after |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['size_bytes'] / 1024:.0f} | {r['native_median_ms']:.4f} | {r['python_median_ms']:.4f} | "
              f"{r['ratio']:.3f} | {r['median_round_ratio']:.3f} | {'yes' if r['same_topk'] else 'NO'} | "
              f"{r['loadavg_before'][0]:.2f} / {r['loadavg_after'][0]:.2f} |")
    result = {
        "command": "benchmarks/native_runner.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version()},
        "runner": {"binary": str(binary), **read_build_record(binary.parent)},
        "protocol": {"rounds": args.rounds, "warmup": args.warmup, "iterations": args.iterations, "threads": 1},
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(result, indent=1) + "\n")
    tmp_out.replace(args.out)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
