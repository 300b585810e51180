"""Size and latency of the `.pte` recipes on a 25,000-item catalogue (issue 12's second goal).

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/export_large_catalogue.py [--items 25000] [--rounds 30]

SASRec L200 d64, 2 layers × 2 heads, FFN 256 over a catalogue of `--items` items, with its initial (untrained)
weights: a file's size and an XNNPACK program's latency do not depend on the weights' values, so no
training is needed for these two columns; accuracy is measured on ml-100k (`export_ml100k.py`), not here.
Every variant is exported, then timed at batch 1 and 1 thread in interleaved rounds (the order shuffled
each round) so that load changes hit all of them alike. Prints a table and writes
benchmarks/results/export_large_catalogue.json with the load average.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from easrec.devices.runners import load_runner
from easrec.export import export_model
from easrec.io import atomic_write_json
from easrec.model import SASRec
from easrec.train.run import sasrec_arch

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = [  # name, quantize, int8 recipe, embedding bits
    ("pte fp32", "none", "small", 8),
    ("pte int8 (small)", "int8", "small", 8),
    ("pte int8 (small, int4 table)", "int8", "small", 4),
    ("pte int8 (fast)", "int8", "fast", 8),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=25_000)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--runs-per-round", type=int, default=20)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/export_large_catalogue.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = SASRec(sasrec_arch(200, 64, 2, 2, 256), args.items, 0.0).eval()
    rng = np.random.default_rng(0)
    ids = rng.integers(1, args.items + 1, size=(1, 200)).astype(np.int64)
    sample = rng.integers(1, args.items + 1, size=(64, 200)).astype(np.int64)
    out_dir = Path(tempfile.mkdtemp(prefix="easrec-large-export-"))
    loads = [os.getloadavg()[0]]
    files = {}
    for name, quant, recipe, bits in VARIANTS:
        t0 = time.perf_counter()
        path = out_dir / (name.replace(" ", "_").replace("(", "").replace(")", "").replace(",", "") + ".pte")
        export_model(model, path, "executorch", quantize=quant, int8_recipe=recipe, embedding_bits=bits,
                     sample=sample, calib=sample)
        files[name] = path
        print(f"exported {name}: {path.stat().st_size / 1024:.0f} KiB in {time.perf_counter() - t0:.0f} s", flush=True)
    runners = {n: load_runner(p, threads=1) for n, p in files.items()}
    prepared = {n: r.prepare([ids]) for n, r in runners.items()}
    for n, r in runners.items():
        for _ in range(20):
            r.call(prepared[n])
    times: dict[str, list[float]] = {n: [] for n in runners}
    order_rng = random.Random(0)
    for _ in range(args.rounds):
        order = list(runners)
        order_rng.shuffle(order)
        for n in order:
            for _ in range(args.runs_per_round):
                t0 = time.perf_counter()
                runners[n].call(prepared[n])
                times[n].append((time.perf_counter() - t0) * 1e3)
        loads.append(os.getloadavg()[0])
    base_size, base_t = files["pte fp32"].stat().st_size, np.asarray(times["pte fp32"])
    rows = {}
    print(f"| variant ({args.items} items) | KiB | size / fp32 | median ms | p10 ms | median / fp32 | p10 / fp32 |")
    print("|---|---|---|---|---|---|---|")
    for n, path in files.items():
        t = np.asarray(times[n])
        rows[n] = {"size_bytes": path.stat().st_size, "size_vs_fp32": path.stat().st_size / base_size,
                   "median_ms": float(np.median(t)), "p10_ms": float(np.percentile(t, 10)), "runs": len(t),
                   "median_vs_fp32": float(np.median(t) / np.median(base_t)),
                   "p10_vs_fp32": float(np.percentile(t, 10) / np.percentile(base_t, 10))}
        r = rows[n]
        print(f"| {n} | {r['size_bytes'] / 1024:.0f} | {r['size_vs_fp32']:.2f} | {r['median_ms']:.3f} | {r['p10_ms']:.3f} | "
              f"{r['median_vs_fp32']:.2f} | {r['p10_vs_fp32']:.2f} |")
    atomic_write_json(args.out, {"items": args.items, "arch": model.arch.describe(), "rows": rows,
                                 "load_average": {"min": min(loads), "max": max(loads)}, "cores": os.cpu_count(),
                                 "torch_threads": 1})


if __name__ == "__main__":
    main()
