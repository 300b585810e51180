"""easrec SASRec on ml-100k: accuracy, training speed, memory and evaluation time (issue 2, Benchmark).

ml-100k from ../shared/datasets/ml-100k, no filtering; d 64, 2 layers, 2 heads, FFN 256, full-softmax CE,
AdamW lr 1e-3, batch 128, early stopping on validation NDCG@10 with patience 10, torch at `--threads` (2).
Every training run is a separate `easrec train` process (so its peak RSS is its own); the script then
loads each run's best model and times `easrec.train.evaluate.evaluate_model` on the test split (all 943
users, full ranking) on its own.

Runs, in order:
  1. the dropout check at L 50 (`--dropouts`, default 0.2 and 0.5), seen items excluded; the dropout with
     the higher validation NDCG@10 is kept (`--dropout X` skips the check);
  2. for every `--max-lens` value: a run with seen items excluded (the L-50 one is reused from step 1) and,
     at L 50, a run with `--keep-seen` (early stopping and test both keep seen items: RecBole's protocol,
     compared with `benchmarks/results/recbole_sasrec.json`).
Every run reports test HR/NDCG/MRR@10 under both conventions. Prints a table and writes
`benchmarks/results/sasrec_ml100k.json`; the machine's load average is recorded with every timing.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/sasrec_ml100k.py [--max-lens 50,200] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
DATA = REPO.parent / "shared" / "datasets" / "ml-100k"
ARCH = {"d": 64, "layers": 2, "heads": 2, "ffn": 256}


def load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def train(args, max_len: int, dropout: float, keep_seen: bool, name: str) -> dict:
    """One `easrec train` process; returns its metrics.json plus the command and load averages."""
    out = Path(args.runs) / name
    cmd = [sys.executable, "-m", "easrec.cli", "train", str(args.data), "--max-len", str(max_len),
           "--d", str(ARCH["d"]), "--layers", str(ARCH["layers"]), "--heads", str(ARCH["heads"]), "--ffn", str(ARCH["ffn"]),
           "--dropout", str(dropout), "--epochs", str(args.epochs), "--patience", str(args.patience),
           "--batch-size", str(args.batch_size), "--lr", str(args.lr), "--seed", str(args.seed),
           "--threads", str(args.threads), "--out", str(out), "--json"]
    if keep_seen:
        cmd.append("--keep-seen")
    if args.reuse and (out / "metrics.json").is_file() and (out / "run.json").is_file():
        log(f"reusing {out} (--reuse)")
        metrics = json.loads((out / "metrics.json").read_text())
        metrics.update(json.loads((out / "run.json").read_text()))
        return metrics
    before = load_avg()
    log(f"train {name}: L {max_len}, dropout {dropout}, keep_seen {keep_seen} (load {before})")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"easrec train failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    info = dict(name=name, max_len=max_len, dropout=dropout, keep_seen=keep_seen, run=str(out),
                process_wall_seconds=wall, load_avg_before=before, load_avg_after=load_avg(),
                command=" ".join(["easrec", *cmd[3:]]))
    (out / "run.json").write_text(json.dumps(info, indent=2) + "\n")
    metrics.update(info)
    ep = metrics["epoch_seconds"]
    log(f"  best epoch {metrics['best_epoch']}/{metrics['epochs']}, {statistics.mean(ep):.2f} s/epoch, "
        f"{metrics['seconds_to_best']:.1f} s to best, valid ndcg@10 {metrics['valid']['ndcg@10']:.4f}, "
        f"test ndcg@10 {metrics['test']['ndcg@10']:.4f} (load {metrics['load_avg_after']})")
    return metrics


def time_eval(run: Path, repeats: int, threads: int) -> dict:
    """Wall time of evaluate_model on the test split (all users, full ranking, seen items excluded)."""
    import torch

    from easrec.train.checkpoint import load_model, load_run_dataset
    from easrec.train.evaluate import evaluate_model

    torch.set_num_threads(threads)
    model = load_model(run)
    split = load_run_dataset(run).split()
    evaluate_model(model, split, "test")  # warm-up (first call builds the padded arrays, allocator warm-up)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        evaluate_model(model, split, "test")
        times.append(time.perf_counter() - t)
    return {"users": split.n_eval, "min_seconds": min(times), "median_seconds": statistics.median(times),
            "repeats": repeats, "load_avg": load_avg()}


def summarize(m: dict) -> dict:
    """The table's row for one run: both seen-item conventions."""
    excl = m["test_excluding_seen"] if m["keep_seen"] else m["test"]
    keep = m["test"] if m["keep_seen"] else m["test_keep_seen"]
    ep = m["epoch_seconds"]
    return {
        "name": m["name"], "max_len": m["max_len"], "dropout": m["dropout"],
        "selected_on": "valid keep-seen" if m["keep_seen"] else "valid excl. seen",
        "test_excluding_seen": {k: excl[k] for k in ("hr@10", "ndcg@10", "mrr@10")},
        "test_keep_seen": {k: keep[k] for k in ("hr@10", "ndcg@10", "mrr@10")},
        "valid_ndcg@10": m["valid"]["ndcg@10"],
        "best_epoch": m["best_epoch"], "epochs": m["epochs"],
        "seconds_per_epoch": statistics.mean(ep), "seconds_per_epoch_median": statistics.median(ep),
        "seconds_to_best": m["seconds_to_best"], "train_seconds": m["train_seconds"],
        "samples_per_second": m["samples_per_second"], "peak_rss_mb": m["peak_rss_mb"],
        "eval_seconds": m.get("eval", {}).get("min_seconds"),
        "load_avg": [m["load_avg_before"], m["load_avg_after"]],
    }


def table(rows: list[dict], recbole: dict | None) -> str:
    head = (f"{'run':<16}{'L':>4}{'drop':>5} | {'HR@10':>6}{'NDCG':>7}{'MRR':>7} | {'HR@10':>6}{'NDCG':>7}{'MRR':>7} | "
            f"{'best/ep':>7}{'s/ep':>6}{'s→best':>8}{'samp/s':>8}{'RSS MB':>7}{'eval s':>7}")
    lines = [" " * 27 + "| test, seen excluded  | test, keep seen      |", head, "-" * len(head)]
    for r in rows:
        e, k = r["test_excluding_seen"], r["test_keep_seen"]
        lines.append(f"{r['name']:<16}{r['max_len']:>4}{r['dropout']:>5} | {e['hr@10']:>6.4f}{e['ndcg@10']:>7.4f}{e['mrr@10']:>7.4f} | "
                     f"{k['hr@10']:>6.4f}{k['ndcg@10']:>7.4f}{k['mrr@10']:>7.4f} | {r['best_epoch']:>3}/{r['epochs']:<3}"
                     f"{r['seconds_per_epoch']:>6.2f}{r['seconds_to_best']:>8.1f}{r['samples_per_second']:>8.0f}"
                     f"{r['peak_rss_mb']:>7.0f}{(r['eval_seconds'] or float('nan')):>7.3f}")
    if recbole and recbole.get("epochs_done"):
        t = recbole.get("test", {})
        fmt = lambda k: f"{t[k]:.4f}" if k in t else "  -   "  # noqa: E731
        lines.append(f"{'RecBole 1.2.1':<16}{50:>4}{0.5:>5} | {'':>20} | {fmt('hit@10'):>6} {fmt('ndcg@10'):>6} {fmt('mrr@10'):>6} | "
                     f"{recbole.get('best_epoch', 0):>3}/{recbole['epochs_done']:<3}{recbole['mean_train_seconds_per_epoch']:>6.1f}"
                     f"{recbole['seconds_to_best']:>8.0f}  ({'finished' if recbole.get('finished') else 'unfinished'})")
    return "\n".join(lines)


def compare(rows: list[dict], recbole: dict | None) -> dict | None:
    """easrec L 50 --keep-seen against RecBole: accuracy, time to best, per-epoch time, eval time."""
    ks = [r for r in rows if r["name"] == "L50-keep-seen"]
    if not ks or not recbole or not recbole.get("epochs_done"):
        return None
    e = ks[0]
    out = {"recbole_finished": recbole.get("finished", False),
           "recbole_epochs_done": recbole["epochs_done"],
           "seconds_per_epoch_ratio": recbole["mean_train_seconds_per_epoch"] / e["seconds_per_epoch"],
           "seconds_to_best_ratio": recbole["seconds_to_best"] / e["seconds_to_best"],
           "valid_ndcg@10": {"easrec": e["valid_ndcg@10"], "recbole_best_so_far": recbole["best_valid"].get("ndcg@10")}}
    if recbole.get("test"):
        out["test"] = {k: {"easrec": e["test_keep_seen"][k], "recbole": recbole["test"][rk]}
                       for k, rk in (("hr@10", "hit@10"), ("ndcg@10", "ndcg@10"), ("mrr@10", "mrr@10"))}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--max-lens", default="50,200")
    ap.add_argument("--dropouts", default="0.2,0.5", help="dropouts tried at L 50 (the best on validation is kept)")
    ap.add_argument("--dropout", type=float, default=None, help="skip the check and use this dropout")
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--patience", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval-repeats", type=int, default=5)
    ap.add_argument("--runs", default="/tmp/easrec-bench", help="folder of the run directories")
    ap.add_argument("--recbole", default=str(ROOT / "results" / "recbole_sasrec.json"))
    ap.add_argument("--out", default=str(ROOT / "results" / "sasrec_ml100k.json"))
    ap.add_argument("--reuse", action="store_true", help="reuse finished runs found in --runs (their run.json)")
    ap.add_argument("--quick", action="store_true", help="smoke test: 2 epochs, patience 1, results to /tmp")
    args = ap.parse_args(argv)
    if args.quick:
        args.epochs, args.patience, args.eval_repeats = 2, 1, 1
        if args.out == ap.get_default("out"):
            args.out = "/tmp/sasrec_ml100k_quick.json"
        args.runs = args.runs + "-quick"
    max_lens = [int(x) for x in args.max_lens.split(",") if x]
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    load_start = load_avg()

    runs: list[dict] = []
    check = []
    if args.dropout is None:
        for p in (float(x) for x in args.dropouts.split(",")):
            m = train(args, 50, p, False, f"L50-drop{p}")
            check.append(m)
        dropout = max(check, key=lambda m: m["valid"]["ndcg@10"])["dropout"]
        log(f"dropout check: {[(m['dropout'], round(m['valid']['ndcg@10'], 4)) for m in check]} -> {dropout}")
    else:
        dropout = args.dropout
    for L in max_lens:
        reuse = [m for m in check if m["max_len"] == L and m["dropout"] == dropout]
        runs.append(reuse[0] if reuse else train(args, L, dropout, False, f"L{L}-drop{dropout}"))
        if L == 50:
            runs.append(train(args, 50, dropout, True, "L50-keep-seen"))
    for m in runs + [c for c in check if c not in runs]:
        m["eval"] = time_eval(Path(m["run"]), args.eval_repeats, args.threads)
        log(f"eval {m['name']}: {m['eval']['users']} users in {m['eval']['min_seconds']:.3f} s "
            f"(median {m['eval']['median_seconds']:.3f}, load {m['eval']['load_avg']})")

    recbole = json.loads(Path(args.recbole).read_text()) if Path(args.recbole).is_file() else None
    rows = [summarize(m) for m in runs]
    check_rows = [summarize(m) for m in check]
    text = table(rows + [r for r in check_rows if r["name"] not in {x["name"] for x in rows}], recbole)
    print(text)
    cmp = compare(rows, recbole)
    if cmp:
        print(json.dumps(cmp, indent=2))
    import torch

    report = {
        "benchmark": "SASRec on ml-100k (easrec)", "started": started, "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]), "quick": args.quick,
        "setting": {"arch": ARCH, "loss": "ce (full softmax)", "optimizer": "AdamW", "lr": args.lr, "batch_size": args.batch_size,
                    "patience": args.patience, "max_epochs": args.epochs, "seed": args.seed, "threads": args.threads,
                    "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "filtering": "none",
                    "split": "chronological leave-one-out", "ranking": "full catalogue"},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor(),
                    "load_avg_start": load_start, "load_avg_end": load_avg()},
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "dropout_check": [{"dropout": m["dropout"], "valid_ndcg@10": m["valid"]["ndcg@10"],
                           "test_ndcg@10": m["test"]["ndcg@10"], "best_epoch": m["best_epoch"]} for m in check],
        "dropout": dropout,
        "results": rows + [r for r in check_rows if r["name"] not in {x["name"] for x in rows}],
        "vs_recbole": cmp,
        "runs": [{k: v for k, v in m.items() if k not in ("arch",)} for m in runs + [c for c in check if c not in runs]],
        "table": text,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
