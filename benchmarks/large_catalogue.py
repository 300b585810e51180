"""Full-softmax CE (chunked) and sampled softmax on a large catalogue: seconds per epoch and peak memory (issue 9).

Synthetic data (easrec.data.synthetic, seed 0): 30,000 users, a catalogue of 25,000 items, ~300,000
interactions; SASRec L 50, d 64, 2 layers x 2 heads, FFN 256, AdamW lr 1e-3. Every configuration trains
one epoch (every window of every user's train part, batches of similar length, as the trainer does) in
its own process, so each peak RSS (`resource.getrusage(...).ru_maxrss`) is its own; the RSS before
training (data + model built) is recorded too, so the training's own share is the difference.

Configurations: CE and sampled CE (256 uniform negatives) at batch 128, and CE at batch 1024 with the
logits chunked (the default: checkpointed chunks of <= 256 MB) and not chunked (what easrec did before),
which is where a full-softmax over 25,000 items blows up memory.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/large_catalogue.py [--steps N] [--threads 2]

`--steps N` / `--max-seconds S` stop each configuration after N optimizer steps / S seconds of training
(the table marks those rows and extrapolates seconds per epoch) when a whole epoch is too slow: on the
2-core machine full-softmax CE over 25,000 items takes ~3 s per step of 128 sequences, ~12 minutes an
epoch. Prints a table and writes benchmarks/results/large_catalogue.json.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/large_catalogue.py --max-seconds 60
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
CONFIGS = [
    {"name": "ce, batch 128", "loss": "ce", "batch": 128},
    {"name": "sampled-ce 256, batch 128", "loss": "sampled-ce", "batch": 128, "negatives": 256},
    {"name": "ce, batch 1024, chunked", "loss": "ce", "batch": 1024},
    {"name": "ce, batch 1024, not chunked", "loss": "ce", "batch": 1024, "chunk_bytes": 2**62},
]


def rss_mb() -> float:
    """Peak resident set size of this process so far, MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def build_data(args):
    """The synthetic data set, its catalogue padded to exactly `--items` (tail items nobody touched stay in it)."""
    from easrec.data import synthetic_dataset

    ds = synthetic_dataset(n_users=args.users, n_items=args.items, mean_len=args.mean_len, seed=0)
    seen_items = ds.n_items
    if ds.n_items < args.items:
        extra = [f"cold{i}" for i in range(args.items - ds.n_items)]
        ds = replace(ds, n_items=args.items, raw_item_ids=ds.raw_item_ids + extra, _split=None)
    return ds, seen_items


def worker(args, cfg: dict) -> dict:
    """One configuration, one epoch (or --steps), in this process: returns the measurements."""
    import numpy as np
    import torch

    from easrec.model import SASRec
    from easrec.train.run import sasrec_arch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    ds, seen_items = build_data(args)
    data_seconds = time.perf_counter() - t0
    split = ds.split()
    arch = sasrec_arch(args.max_len, 64, 2, 2, 256)
    model = SASRec(arch, ds.n_items, dropout=0.2)
    inputs_np, targets_np = split.train_arrays(arch.max_len)
    inputs, targets = torch.from_numpy(inputs_np), torch.from_numpy(targets_np)
    lengths = (inputs != 0).sum(1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01, betas=(0.9, 0.98))
    gen = torch.Generator().manual_seed(0)
    # Batches of similar length, in random order (as easrec's trainer batches).
    order = torch.argsort(lengths.double() + torch.rand(len(lengths), generator=gen).double())
    batches = list(torch.split(order, cfg["batch"]))
    batches = [batches[i] for i in torch.randperm(len(batches), generator=gen)]
    if args.steps:
        batches = batches[: args.steps]
    rss_before = rss_mb()
    load_before = load_avg()
    model.train()
    losses, n_targets = [], 0
    start = time.perf_counter()
    for idx in batches:
        if args.max_seconds and time.perf_counter() - start > args.max_seconds:
            break
        width = int(lengths[idx].max())
        x, y = inputs[idx, -width:], targets[idx, -width:]
        kw = {"kind": cfg["loss"], "generator": gen}
        if "negatives" in cfg:
            kw["negatives"] = cfg["negatives"]
        if "chunk_bytes" in cfg:
            kw["chunk_bytes"] = cfg["chunk_bytes"]
        loss = model.loss(x, y, **kw)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        n_targets += int((y != 0).sum())
    seconds = time.perf_counter() - start
    steps_per_epoch = -(-len(order) // cfg["batch"])
    steps = len(losses)
    full_epoch = steps == steps_per_epoch
    out = {
        **cfg,
        "chunk_bytes": cfg.get("chunk_bytes", 256 * 2**20),
        "steps": steps,
        "steps_per_epoch": steps_per_epoch,
        "full_epoch": full_epoch,
        "seconds": seconds,
        "seconds_per_epoch": seconds if full_epoch else seconds / steps * steps_per_epoch,
        "targets": n_targets,
        "targets_per_second": n_targets / seconds,
        "loss_first": losses[0],
        "loss_last_mean_10": float(np.mean(losses[-10:])),
        "rss_before_training_mb": rss_before,
        "peak_rss_mb": rss_mb(),
        "load_avg_before": load_before,
        "load_avg_after": load_avg(),
        "data": {"users": ds.n_users, "items": ds.n_items, "items_with_interactions": seen_items,
                 "interactions": int(ds.lengths().sum()), "train_windows": len(order), "seconds": data_seconds},
    }
    if args.eval and cfg is CONFIGS[0]:
        from easrec.train.evaluate import evaluate_model

        model.eval()
        t = time.perf_counter()
        valid = evaluate_model(model, split, "valid")
        out["eval"] = {"users": split.n_eval, "seconds": time.perf_counter() - t, "ndcg@10": valid["ndcg@10"],
                       "peak_rss_mb": rss_mb()}
    return out


def table(rows: list[dict]) -> str:
    head = f"{'configuration':<30}{'steps':>11}{'s/epoch':>9}{'targets/s':>10}{'RSS before':>11}{'peak RSS':>9}  {'load avg (1, 5, 15 min)':<24}"
    lines = [head, "-" * len(head)]
    for r in rows:
        steps = f"{r['steps']}/{r['steps_per_epoch']}"
        est = "" if r["full_epoch"] else "*"
        lines.append(f"{r['name']:<30}{steps:>11}{r['seconds_per_epoch']:>8.1f}{est:1}{r['targets_per_second']:>10.0f}"
                     f"{r['rss_before_training_mb']:>11.0f}{r['peak_rss_mb']:>9.0f}  {str(r['load_avg_after']):<24}")
    if any(not r["full_epoch"] for r in rows):
        lines.append("* not a whole epoch (limited by --steps / --max-seconds): seconds per epoch extrapolated from the steps run")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=30_000)
    p.add_argument("--items", type=int, default=25_000)
    p.add_argument("--mean-len", type=float, default=9.5, help="mean sequence length (9.5 gives ~300,000 interactions)")
    p.add_argument("--max-len", type=int, default=50)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=None, help="stop each configuration after N steps")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="stop a configuration at the first step that starts after this many seconds of training")
    p.add_argument("--no-eval", dest="eval", action="store_false", help="skip timing the valid evaluation")
    p.add_argument("--only", type=int, nargs="*", help="indices of CONFIGS to run")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "large_catalogue.json")
    p.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker is not None:
        sys.stdout.write(json.dumps(worker(args, CONFIGS[args.worker])) + "\n")
        return
    rows = []
    for i, cfg in enumerate(CONFIGS):
        if args.only is not None and i not in args.only:
            continue
        cmd = [sys.executable, __file__, "--worker", str(i), "--users", str(args.users), "--items", str(args.items),
               "--mean-len", str(args.mean_len), "--max-len", str(args.max_len), "--threads", str(args.threads)]
        if args.steps:
            cmd += ["--steps", str(args.steps)]
        if args.max_seconds:
            cmd += ["--max-seconds", str(args.max_seconds)]
        if not args.eval:
            cmd.append("--no-eval")
        print(f"[{time.strftime('%H:%M:%S')}] {cfg['name']} (load {load_avg()})", flush=True)
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{cfg['name']} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"  {row['steps']} steps, {row['seconds']:.1f} s, peak RSS {row['peak_rss_mb']:.0f} MB", flush=True)
        rows.append(row)
    data = rows[0]["data"] if rows else {}
    print(f"\n{data.get('users')} users, {data.get('items')} items ({data.get('items_with_interactions')} with interactions), "
          f"{data.get('interactions')} interactions; SASRec L {args.max_len}, d 64, 2x2 heads, FFN 256; "
          f"torch {args.threads} threads\n")
    print(table(rows))
    for r in rows:
        if "eval" in r:
            e = r["eval"]
            print(f"\nfull-ranking valid evaluation of {e['users']} users over {data.get('items')} items "
                  f"(whole history excluded): {e['seconds']:.1f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {"measured": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
              "python": platform.python_version()}, "command": " ".join(["python", *sys.argv]),
              "setup": {"max_len": args.max_len, "d": 64, "layers": 2, "heads": 2, "ffn": 256, "threads": args.threads,
                        "steps_limit": args.steps, "max_seconds": args.max_seconds}, "data": data, "rows": rows}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
