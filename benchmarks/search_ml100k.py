"""Searched subnets against SASRecs scaled by hand to the same budget, on ml-100k, over several seeds.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/search_ml100k.py [--ratios 0.5,0.25] [--seeds 0,1,2] \
        [--lut lut.json] [--grid-lens 50,100,200] [--grid-ds 16,32,48,64] [--grid-layers 1,2]

For each budget ratio R (× the predicted cost of the reference SASRec, L200 d64 2×2 heads FFN 256):
  1. the reference SASRec, one run per seed;
  2. hand-scaled SASRecs: every (L, d, layers) of the grid whose cost fits the budget (2 heads, FFN 4d;
     with --lut, heads of the table's head size, since a measured table costs only those),
     trained once (first seed); the best on *validation* NDCG@10 is then trained with every seed;
  3. the EASRec search (gates, dynamic constraint) per seed, ending two ways: with its finalists (the α
     choice and the costliest SASRec shape per length that fit, 2 fine-tune epochs each, the best on
     validation kept; `easrec search`'s default) and with α's choice alone (`--finalist-epochs 0`). The
     search itself is shared: both endings read the same search checkpoint. Each subnet is fine-tuned from
     the inherited weights (`inherit`) and the same architecture retrained from scratch (`scratch`);
  4. the gates ablation: α's architecture with the gates off, from scratch.
Every model uses the same trainer and defaults (`easrec.train.trainer.TrainConfig`). Test NDCG@10 is
full ranking with the user's whole history excluded. Each row gives the mean over seeds with a Student-t
95 % CI; each comparison a paired bootstrap 95 % CI over users of the seed-averaged per-user NDCG@10.
Runs are kept under `--work` and reused, so the benchmark can be interrupted and continued. Searches
are kept per cost model (`r<R>` for FLOPs, `r<R>-<lut name>` for a table), so runs of both cost models
share one `--work` and its reference and hand-scaled trainings. `--weight-decay/--beta2/--grad-clip`
set every model's optimizer, `--no-ablations` keeps the main rows (no retrains from scratch, no gates
ablation).
Prints a table and writes benchmarks/results/search_ml100k.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch

from easrec.data import data_config, load_dataset
from easrec.io import atomic_write_json
from easrec.model.sasrec import DEFAULT_DROPOUT
from easrec.search.gates import GatesConfig
from easrec.search.run import load_cost_model, resolve_budget, search_run
from easrec.space import Arch, SearchSpace, reference_arch
from easrec.train.run import read_per_user, sasrec_arch, train_run
from easrec.train.stats import mean_ci_over_seeds, paired_bootstrap
from easrec.train.checkpoint import CHECKPOINT_FILE
from easrec.train.trainer import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
METRIC = "ndcg@10"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg} (load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)


def per_user(run: Path) -> np.ndarray:
    return np.asarray(read_per_user(run)["metrics"][METRIC], dtype=np.float64)


def trained(ds, data_cfg, arch: Arch, cfg: TrainConfig, out: Path, dropout: float) -> dict:
    """Train (or reuse, or resume from its checkpoint) one run; returns its metrics.json."""
    if (out / "metrics.json").is_file():
        return json.loads((out / "metrics.json").read_text())
    resume = (out / CHECKPOINT_FILE).is_file()
    log(f"{'resume' if resume else 'train'} {arch.describe()} seed {cfg.seed} -> {out}")
    return train_run(ds, data_cfg, arch, cfg, out, dropout=dropout, resume=resume)


def job(task: tuple) -> str:
    """One training or search, run in a worker process (the data set is loaded there)."""
    kind, data, out, payload, cfg, dropout, threads = task
    torch.set_num_threads(threads)
    ds, data_cfg = load_dataset(data), data_config(data)
    if kind == "train":
        trained(ds, data_cfg, Arch.from_dict(payload), cfg, out, dropout)
    elif not (out / "metrics.json").is_file():
        lut, ratio, search_epochs, finalist_epochs, shared = payload
        cm = load_cost_model(SearchSpace(), ds.n_items, lut)
        done = Path(shared) / "search_checkpoint.pt" if shared else None
        if done is not None and done.is_file() and (Path(shared) / "metrics.json").is_file() and not (out / "search_checkpoint.pt").is_file():
            # Same data, seed and search options: the search is the same; only what follows it differs.
            out.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(done, out / "search_checkpoint.pt")
        log(f"search R {ratio} seed {cfg.seed} finalist epochs {finalist_epochs} -> {out}")
        search_run(ds, data_cfg, out, cost_model=cm, budget=resolve_budget(cm, ratio=ratio),
                   gates_cfg=GatesConfig(epochs=search_epochs, seed=cfg.seed, threads=threads), finetune=cfg,
                   dropout=dropout, resume=(out / "search_checkpoint.pt").is_file(), finalist_epochs=finalist_epochs)
    return str(out)


def run_all(tasks: list[tuple], jobs: int) -> None:
    """Run independent tasks, `jobs` at a time (each a process with its own torch threads)."""
    if jobs <= 1:
        for t in tasks:
            job(t)
        return
    def stop(signum, frame):
        # Workers left running would keep writing the run directories a restarted benchmark resumes.
        for child in multiprocessing.active_children():
            child.terminate()
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        for _ in pool.map(job, tasks):
            pass


def summary(name: str, ratio: float, runs: list[Path], cost: float | None, budget: float | None, arch: str) -> dict:
    metrics = [json.loads((r / "metrics.json").read_text()) for r in runs]
    return {"variant": name, "ratio": ratio, "arch": arch, "cost": cost, "budget": budget,
            "test": mean_ci_over_seeds([m["test"][METRIC] for m in metrics]),
            "valid": mean_ci_over_seeds([m["valid"][METRIC] for m in metrics]),
            "seconds": float(np.mean([m.get("train_seconds") or m.get("total_seconds") or 0 for m in metrics])),
            "runs": [str(r) for r in runs]}


def compare(a_runs: list[Path], b_runs: list[Path]) -> dict:
    a = np.mean([per_user(r) for r in a_runs], axis=0)
    b = np.mean([per_user(r) for r in b_runs], axis=0)
    return paired_bootstrap(a, b)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets" / "ml-100k"))
    ap.add_argument("--lut", type=Path, help="latency LUT (default: analytic FLOPs)")
    ap.add_argument("--ratios", default="0.5,0.25")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--grid-lens", default="50,100,200")
    ap.add_argument("--grid-ds", default="16,32,48,64")
    ap.add_argument("--grid-layers", default="1,2")
    ap.add_argument("--search-epochs", type=int, default=20)
    ap.add_argument("--finalist-epochs", type=int, default=2, help="fine-tune epochs per finalist of the finalist ending")
    ap.add_argument("--dropout", type=float, default=DEFAULT_DROPOUT)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per training")
    ap.add_argument("--targets", choices=["last", "all"], default=TrainConfig.targets,
                    help="training samples of every model (last: the trainer's default; all: windows, ~3x cheaper)")
    ap.add_argument("--weight-decay", type=float, default=TrainConfig.weight_decay, help="every model's optimizer (TrainConfig's default)")
    ap.add_argument("--beta2", type=float, default=TrainConfig.beta2)
    ap.add_argument("--grad-clip", type=float, default=TrainConfig.grad_clip)
    ap.add_argument("--no-ablations", action="store_true",
                    help="skip the retrains from scratch and the gates ablation (main rows only: reference, hand-scaled, search)")
    ap.add_argument("--jobs", type=int, default=1, help="trainings run at once (independent ones; one process each)")
    ap.add_argument("--work", type=Path, default=Path("runs/bench_search"))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "search_ml100k.json")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    ratios = [float(r) for r in args.ratios.split(",")]
    ds = load_dataset(args.data)
    base_cfg = TrainConfig(threads=args.threads, weight_decay=args.weight_decay, beta2=args.beta2, grad_clip=args.grad_clip)
    if args.targets == "all":
        # Window training with the batch and patience measured for it (benchmarks/README.md): ~3x cheaper per model.
        base_cfg = dataclasses.replace(base_cfg, targets="all", batch_size=128, patience=10)
    cfg = lambda seed: dataclasses.replace(base_cfg, seed=seed)  # noqa: E731
    train_task = lambda arch, seed, out: ("train", args.data, out, arch.to_dict(), cfg(seed), args.dropout, args.threads)  # noqa: E731
    rows, comparisons = [], []
    space = SearchSpace()
    cm = load_cost_model(space, ds.n_items, args.lut)
    ref = reference_arch()
    ref_runs = [args.work / f"reference/seed-{s}" for s in seeds]
    # Hand-scaled SASRecs: 2 heads splitting d, FFN 4d, as users scale SASRec by hand. A measured table
    # costs only the space's own head size, so with --lut the heads fill d with it (as the finalists do).
    heads = (lambda d: 2) if args.lut is None else (lambda d: max(1, d // space.head_size))  # noqa: E731
    grid = [sasrec_arch(L, d, n, heads(d), 4 * d) for L in map(int, args.grid_lens.split(",")) for d in map(int, args.grid_ds.split(","))
            for n in map(int, args.grid_layers.split(","))]
    budgets = {ratio: resolve_budget(cm, ratio=ratio) for ratio in ratios}
    fits = {ratio: [a for a in grid if cm.cost(a) <= budgets[ratio]] for ratio in ratios}
    # A hand-scaled SASRec's training does not depend on the budget: one run serves every ratio it fits.
    hand_dir = lambda ratio, a, s: args.work / f"hand/{a.hash()}/seed-{s}"  # noqa: E731
    # Searches depend on the cost model; the reference and hand-scaled runs do not, so one --work serves both.
    budget_dir = lambda ratio: args.work / (f"r{ratio}" if args.lut is None else f"r{ratio}-{args.lut.stem}")  # noqa: E731
    search_dir = lambda ratio, s: budget_dir(ratio) / f"search/seed-{s}"  # noqa: E731
    # A contest of another length is another ending of the same search: its own folder, so both are kept.
    final_name = "search-finalists" if args.finalist_epochs == 2 else f"search-finalists-e{args.finalist_epochs}"
    final_dir = lambda ratio, s: budget_dir(ratio) / f"{final_name}/seed-{s}"  # noqa: E731
    for ratio in ratios:
        log(f"R {ratio}: budget {budgets[ratio]:.4g} {cm.unit}; {len(fits[ratio])} of {len(grid)} hand-scaled SASRecs fit")

    # Phase 1, independent: the reference per seed, the grid scan (first seed), the search per seed.
    phase1 = [train_task(ref, s, run) for s, run in zip(seeds, ref_runs)]
    phase1 += [("search", args.data, search_dir(ratio, s), (args.lut, ratio, args.search_epochs, 0, None), cfg(s), args.dropout,
                args.threads) for ratio in ratios for s in seeds]
    scans = {a.hash(): a for ratio in ratios for a in fits[ratio]}
    phase1 += [train_task(a, seeds[0], hand_dir(None, a, seeds[0])) for a in scans.values()]
    run_all(phase1, args.jobs)
    # The finalist ending reads the finished search of the α-only ending (same seed and options).
    run_all([("search", args.data, final_dir(ratio, s), (args.lut, ratio, args.search_epochs, args.finalist_epochs, search_dir(ratio, s)),
              cfg(s), args.dropout, args.threads) for ratio in ratios for s in seeds], args.jobs)
    # Phase 2, given phase 1: the best hand-scaled SASRec on validation and the searched architectures, every seed.
    best, archs, final_archs, phase2 = {}, {}, {}, []
    for ratio in ratios:
        best[ratio] = max(fits[ratio], key=lambda a: json.loads((hand_dir(ratio, a, seeds[0]) / "metrics.json").read_text())["valid"][METRIC])
        archs[ratio] = [Arch.from_dict(json.loads((search_dir(ratio, s) / "arch.json").read_text())) for s in seeds]
        final_archs[ratio] = [Arch.from_dict(json.loads((final_dir(ratio, s) / "arch.json").read_text())) for s in seeds]
        phase2 += [train_task(best[ratio], s, hand_dir(ratio, best[ratio], s)) for s in seeds
                   if all(t[2] != hand_dir(ratio, best[ratio], s) for t in phase2)]
        if args.no_ablations:
            continue
        for s, arch in zip(seeds, archs[ratio]):
            phase2.append(train_task(arch, s, budget_dir(ratio) / f"search-scratch/seed-{s}"))
            phase2.append(train_task(dataclasses.replace(arch, gates=False), s, budget_dir(ratio) / f"search-nogates/seed-{s}"))
        for s, arch in zip(seeds, final_archs[ratio]):
            phase2.append(train_task(arch, s, budget_dir(ratio) / f"{final_name}-scratch/seed-{s}"))
    run_all(phase2, args.jobs)

    rows.append(summary("SASRec reference", 1.0, ref_runs, None, None, ref.describe()))
    for ratio in ratios:
        budget = budgets[ratio]
        scan = []
        for a in fits[ratio]:
            m = json.loads((hand_dir(ratio, a, seeds[0]) / "metrics.json").read_text())
            scan.append({"arch": a.describe(), "cost": cm.cost(a), "valid": m["valid"][METRIC], "test": m["test"][METRIC]})
        hand_runs = [hand_dir(ratio, best[ratio], s) for s in seeds]
        rows.append(summary("best hand-scaled SASRec (on valid)", ratio, hand_runs, cm.cost(best[ratio]), budget, best[ratio].describe()))
        rows[-1]["scan"] = scan
        inherit_runs = [search_dir(ratio, s) for s in seeds]
        scratch_runs = [budget_dir(ratio) / f"search-scratch/seed-{s}" for s in seeds]
        nogate_runs = [budget_dir(ratio) / f"search-nogates/seed-{s}" for s in seeds]
        final_runs = [final_dir(ratio, s) for s in seeds]
        final_scratch_runs = [budget_dir(ratio) / f"{final_name}-scratch/seed-{s}" for s in seeds]
        for name, runs, found in (("EASRec search + finalists", final_runs, final_archs[ratio]), ("EASRec search, α choice only", inherit_runs, archs[ratio])):
            desc = "; ".join(sorted({a.describe() for a in found}))
            costs = [cm.cost(a) for a in found]
            ms = [json.loads((r / "metrics.json").read_text()) for r in runs]
            # Search (its own seconds, also when read from a shared checkpoint) + finalists + fine-tune.
            search_seconds = [m["search_seconds"] + m.get("finalist_seconds", 0.0) + m["finetune_seconds"] for m in ms]
            rows.append(summary(f"{name}, inherited weights", ratio, runs, float(np.mean(costs)), budget, desc))
            rows[-1]["budget_used"] = [c / budget for c in costs]
            rows[-1]["search_seconds"] = search_seconds
            # Search + fine-tune against one reference training, both wall seconds at the same thread count.
            rows[-1]["time_vs_reference"] = float(np.mean(search_seconds)) / rows[0]["seconds"] if rows[0]["seconds"] else None
            if found is final_archs[ratio]:
                rows[-1]["finalists"] = [m.get("finalists") for m in ms]
                if not args.no_ablations:
                    rows.append(summary(f"{name}, retrained from scratch", ratio, final_scratch_runs, float(np.mean(costs)), budget, desc))
        pairs = [("finalists, inherit", final_runs), ("α only, inherit", inherit_runs)]
        if args.no_ablations:
            for name, runs in pairs:
                comparisons.append({"ratio": ratio, "a": "best hand-scaled", "b": f"search ({name})", **compare(hand_runs, runs)})
                comparisons.append({"ratio": ratio, "a": "reference", "b": f"search ({name})", **compare(ref_runs, runs)})
            comparisons.append({"ratio": ratio, "a": "search (α only, inherit)", "b": "search (finalists, inherit)", **compare(inherit_runs, final_runs)})
            continue
        desc = "; ".join(sorted({a.describe() for a in archs[ratio]}))
        rows.append(summary("EASRec search, α choice only, retrained from scratch", ratio, scratch_runs,
                            float(np.mean([cm.cost(a) for a in archs[ratio]])), budget, desc))
        rows.append(summary("same architectures, gates off (scratch)", ratio, nogate_runs,
                            float(np.mean([cm.cost(dataclasses.replace(a, gates=False)) for a in archs[ratio]])), budget,
                            "; ".join(sorted({dataclasses.replace(a, gates=False).describe() for a in archs[ratio]}))))
        for name, runs in (("finalists, inherit", final_runs), ("finalists, scratch", final_scratch_runs),
                           ("α only, inherit", inherit_runs), ("α only, scratch", scratch_runs)):
            comparisons.append({"ratio": ratio, "a": "best hand-scaled", "b": f"search ({name})", **compare(hand_runs, runs)})
            comparisons.append({"ratio": ratio, "a": "reference", "b": f"search ({name})", **compare(ref_runs, runs)})
        comparisons.append({"ratio": ratio, "a": "search (α only, inherit)", "b": "search (finalists, inherit)", **compare(inherit_runs, final_runs)})
        comparisons.append({"ratio": ratio, "a": "gates off", "b": "gates on (scratch)", **compare(nogate_runs, scratch_runs)})

    print(f"| variant | R | architecture | cost / budget | test {METRIC} (mean, 95 % CI over {len(seeds)} seeds) | valid | train s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        t, v = r["test"], r["valid"]
        ci = f" [{t['ci_low']:.4f}, {t['ci_high']:.4f}]" if t["ci_low"] is not None else ""
        cb = "–" if r["cost"] is None else f"{r['cost']:.3g} / {r['budget']:.3g}"
        print(f"| {r['variant']} | {r['ratio']} | {r['arch']} | {cb} | {t['mean']:.4f}{ci} | {v['mean']:.4f} | {r['seconds']:.0f} |")
    for r in rows:
        if r.get("time_vs_reference") is not None:
            used = ", ".join(f"{u:.0%}" for u in r["budget_used"])
            print(f"R {r['ratio']}, {r['variant']}: budget used per seed {used}; search + fine-tune {np.mean(r['search_seconds']):.0f} s "
                  f"= {r['time_vs_reference']:.2f} x one reference training")
    print()
    print("| R | A | B | mean A | mean B | B − A (95 % CI, paired bootstrap over users) |")
    print("|---|---|---|---|---|---|")
    for c in comparisons:
        print(f"| {c['ratio']} | {c['a']} | {c['b']} | {c['mean_a']:.4f} | {c['mean_b']:.4f} | "
              f"{c['diff']:+.4f} [{c['ci_low']:+.4f}, {c['ci_high']:+.4f}]{' (includes 0)' if c['includes_zero'] else ''} |")
    atomic_write_json(args.out, {"rows": rows, "comparisons": comparisons, "command": " ".join(sys.argv), "seeds": seeds,
                                 "threads": args.threads, "jobs": args.jobs, "targets": args.targets,
                                 "optimizer": {"weight_decay": args.weight_decay, "beta2": args.beta2, "grad_clip": args.grad_clip},
                                 "ablations": not args.no_ablations, "load_average": os.getloadavg(), "cost_model": str(args.lut or "flops")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
