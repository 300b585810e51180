"""Seconds per SASRec training step on ml-100k: fp32 against bf16 autocast, two dropout draws, two matmuls, eager against torch.compile.

`--mode step`: one training step of the default recipe (d 64, 2 layers × 2 heads, FFN 256, batch 256 of
ml-100k's training prefixes at full length, Adam) in each variant (the attention matmul as
`heads_matmul`'s bmm or the 4-D `@` it replaced among them; the loss under `torch.compile`, whose one-off
compile time is printed apart). `--mode epoch`: one whole training epoch
through `train_model` (length-bucketed batches of every width, as `easrec train` runs), per precision.
Variants are interleaved round by round so that the shared machine's drift falls on every variant alike;
the script reports the median per variant and its ratio to the first variant within each round, with the
load average.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/train_step.py --threads 2 --out benchmarks/results/train_step.json
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/train_step.py --mode epoch --rounds 3 --threads 2 \
        --out benchmarks/results/train_epoch.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

import easrec.model.sasrec as sasrec_module
from easrec.data import load_dataset
from easrec.model import SASRec
from easrec.train.run import sasrec_arch
from easrec.train.trainer import TrainConfig, train_model

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "datasets" / "ml-100k"
NEW_DROPOUT = sasrec_module.dropout
BMM = sasrec_module.heads_matmul


def float_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """The previous draw (one uniform float per element), for the comparison."""
    if not training or p == 0.0:
        return x
    return x * ((torch.rand_like(x) >= p) * (1.0 / (1.0 - p)))


def plain_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The attention matmul before `heads_matmul` (a 4-D `@`), for the comparison."""
    return a @ b


VARIANTS = {  # name: (precision, dropout, attention matmul, loss under torch.compile)
    "fp32, float draw (before)": ("fp32", float_dropout, BMM, False),
    "fp32": ("fp32", NEW_DROPOUT, BMM, False),
    "fp32, 4-D @ matmul": ("fp32", NEW_DROPOUT, plain_matmul, False),
    "bf16": ("bf16", NEW_DROPOUT, BMM, False),
    "fp32, torch.compile": ("fp32", NEW_DROPOUT, BMM, True),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=["step", "epoch"], default="step")
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--max-len", type=int, default=50)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=20, help="steps per variant per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "train_step.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset(args.data)
    if args.mode == "epoch":
        return epochs(args, data)
    inputs, targets = data.split().prefix_arrays(args.max_len)
    full = (inputs != 0).sum(1) == args.max_len  # full-length prefixes: every step does the same work
    x_all, y_all = torch.from_numpy(inputs[full]).long(), torch.from_numpy(targets[full]).long()
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = SASRec(sasrec_arch(args.max_len, 64, 2, 2, 256), data.n_items, 0.5).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    compiled_loss = torch.compile(model.loss)  # the same parameters; compiled on first use, timed apart below

    def step(precision: str, compiled: bool = False) -> None:
        idx = torch.randint(0, len(x_all), (args.batch,), generator=gen)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = (compiled_loss if compiled else model.loss)(x_all[idx], y_all[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def timed(name: str, n: int) -> float:
        precision, drop, matmul, compiled = VARIANTS[name]
        sasrec_module.dropout, sasrec_module.heads_matmul = drop, matmul
        try:
            t = time.perf_counter()
            for _ in range(n):
                step(precision, compiled)
            return (time.perf_counter() - t) / n * 1000
        finally:
            sasrec_module.dropout, sasrec_module.heads_matmul = NEW_DROPOUT, BMM

    t0 = time.perf_counter()
    step("fp32", compiled=True)
    compile_s = time.perf_counter() - t0
    print(f"torch.compile: first step {compile_s:.1f} s (compiling)", flush=True)
    for name in VARIANTS:  # warm-up (oneDNN primitives, allocator)
        timed(name, 3)
    rounds, loads = [], []
    for r in range(args.rounds):
        rounds.append({name: timed(name, args.steps) for name in VARIANTS})
        loads.append(round(os.getloadavg()[0], 2))
        print(f"round {r + 1}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in rounds[-1].items()) + f"  load {loads[-1]}", flush=True)
    summary = {}
    for name in VARIANTS:
        ms = [rd[name] for rd in rounds]
        ratio = [rd[name] / rd["fp32, float draw (before)"] for rd in rounds]
        summary[name] = {"median_ms": statistics.median(ms), "ms": ms, "median_ratio_to_before": statistics.median(ratio)}
    print(f"\n{'variant':<28} {'ms / step (median)':>18} {'× before (median of rounds)':>28}")
    for name, s in summary.items():
        print(f"{name:<28} {s['median_ms']:>18.1f} {s['median_ratio_to_before']:>28.2f}")
    print(f"load average per round: {loads}; {args.threads} threads, L {args.max_len}, batch {args.batch}")
    record = {"mode": "step", "variants": summary, "loads": loads, "threads": args.threads, "max_len": args.max_len, "batch": args.batch,
              "steps": args.steps, "rounds": args.rounds, "torch": torch.__version__, "compile_first_step_s": compile_s,
              "bf16_native": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()), "time": time.strftime("%Y-%m-%d %H:%M")}
    write(args.out, record)


def epochs(args: argparse.Namespace, data) -> None:
    """Seconds per step over one whole `train_model` epoch, fp32 and bf16 alternating."""
    split = data.split()
    rounds, loads = [], []
    for r in range(args.rounds):
        row = {}
        for precision in ("fp32", "bf16"):
            torch.manual_seed(0)
            model = SASRec(sasrec_arch(args.max_len, 64, 2, 2, 256), data.n_items, 0.5)
            cfg = TrainConfig(epochs=1, batch_size=args.batch, seed=0, threads=args.threads, precision=precision)
            res = train_model(model, split, cfg)
            row[precision] = res.epoch_seconds[0] / res.steps * 1000
        rounds.append(row)
        loads.append(round(os.getloadavg()[0], 2))
        print(f"round {r + 1}: fp32 {row['fp32']:.1f} ms/step, bf16 {row['bf16']:.1f} ms/step  load {loads[-1]}", flush=True)
    summary = {p: {"median_ms": statistics.median(rd[p] for rd in rounds), "ms": [rd[p] for rd in rounds],
                   "median_ratio_to_fp32": statistics.median(rd[p] / rd["fp32"] for rd in rounds)} for p in ("fp32", "bf16")}
    print(f"\n{'precision':<10} {'ms / step over an epoch (median)':>34} {'× fp32':>8}")
    for p, s in summary.items():
        print(f"{p:<10} {s['median_ms']:>34.1f} {s['median_ratio_to_fp32']:>8.2f}")
    print(f"load average per round: {loads}; {args.threads} threads, L {args.max_len}, batch {args.batch}")
    write(args.out, {"mode": "epoch", "variants": summary, "loads": loads, "threads": args.threads, "max_len": args.max_len,
                     "batch": args.batch, "rounds": args.rounds, "torch": torch.__version__,
                     "bf16_native": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()), "time": time.strftime("%Y-%m-%d %H:%M")})


def write(path: Path, record: dict) -> None:
    """Write the JSON record atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(path)


if __name__ == "__main__":
    main()
