"""`easrec search`: find the most accurate subnet under a device budget."""

from __future__ import annotations

import argparse
from pathlib import Path

from easrec.cli.common import add_data_args, add_json_flag, emit, load_data_from_args, progress_console, progress_enabled


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `search` command."""
    p = sub.add_parser("search", help="search a subnet under a latency / energy / FLOPs budget",
                       description="EASRec search over the elastic SASRec supernet, then fine-tune the chosen subnet.")
    add_data_args(p)
    b = p.add_mutually_exclusive_group(required=True)
    b.add_argument("--budget-ratio", type=float, help="budget = R × the cost of the reference SASRec (L200 d64 2×2 heads FFN 256)")
    b.add_argument("--budget-ms", type=float, help="latency budget in ms (needs --lut)")
    b.add_argument("--budget-mflops", type=float, help="FLOPs budget in MFLOPs (analytic cost model)")
    b.add_argument("--budget-mj", type=float, help="energy budget in mJ (needs an energy --lut)")
    p.add_argument("--lut", type=Path, help="latency/energy table from `easrec profile` (default: analytic FLOPs)")
    p.add_argument("--strategy", choices=["gates"], default="gates")
    p.add_argument("--constraint", choices=["dynamic", "paper"], default="dynamic")
    p.add_argument("--no-gates", action="store_true", help="ablation: supernet without the data-aware gates")
    p.add_argument("--retrain", choices=["inherit", "scratch"], default="inherit", help="fine-tune inherited weights or retrain from scratch")
    p.add_argument("--search-epochs", type=int, default=20)
    p.add_argument("--epochs", type=int, default=200, help="maximum fine-tuning epochs (early stopping)")
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int)
    p.add_argument("--keep-seen", action="store_true")
    p.add_argument("--resume", action="store_true", help="continue an interrupted search in OUT")
    p.add_argument("--out", type=Path, default=Path("runs/search"))
    add_json_flag(p)
    p.set_defaults(func=cmd_search)


def cmd_search(args: argparse.Namespace) -> dict:
    """Run the search and print the chosen architecture, its cost and test metrics."""

    from rich.progress import Progress, TextColumn, TimeElapsedColumn

    from easrec.search.gates import GatesConfig
    from easrec.search.run import load_cost_model, resolve_budget, search_run
    from easrec.space import SearchSpace
    from easrec.train.trainer import TrainConfig

    dataset, data_cfg = load_data_from_args(args)
    space = SearchSpace(gates=not args.no_gates)
    cost_model = load_cost_model(space, dataset.n_items, args.lut)
    if args.budget_ratio is not None:
        budget = resolve_budget(cost_model, ratio=args.budget_ratio)
    else:
        unit, value = next((u, v) for u, v in (("ms", args.budget_ms), ("MFLOPs", args.budget_mflops), ("mJ", args.budget_mj)) if v is not None)
        budget = resolve_budget(cost_model, value=value, unit=unit)
    gcfg = GatesConfig(epochs=args.search_epochs, batch_size=args.batch_size, lr=args.lr, constraint=args.constraint,
                       seed=args.seed, threads=args.threads)
    ft = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, patience=args.patience, seed=args.seed,
                     threads=args.threads, keep_seen=args.keep_seen)
    progress = Progress(TextColumn("[bold]{task.description}"), TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                        console=progress_console, disable=not progress_enabled(args), transient=True)
    with progress:
        tasks = {"search": progress.add_task(f"search 0/{args.search_epochs}", info=""),
                 "finetune": progress.add_task("fine-tune", info="waiting")}
        def on_epoch(stage: str, rec: dict) -> None:
            if stage == "search":
                progress.update(tasks[stage], description=f"search {rec['epoch']}/{args.search_epochs}",
                                info=f"E[cost] {rec['expected_cost']:.4g} {cost_model.unit}  λ {rec['lambda']:.3g}  {rec['arch']}")
            else:
                progress.update(tasks[stage], description=f"fine-tune {rec['epoch']}",
                                info=f"valid ndcg@10 {rec['ndcg@10']:.4f}")
        metrics = search_run(dataset, data_cfg, args.out, cost_model=cost_model, budget=budget, gates_cfg=gcfg,
                             finetune=ft, retrain=args.retrain, dropout=args.dropout, resume=args.resume, on_epoch=on_epoch)
    t = metrics["test"]
    result = {**metrics, "run": str(args.out)}
    return emit(args, result, f"search on {dataset.name}: {args.out}", [
        ("architecture", metrics["arch_description"]),
        ("predicted cost", f"{metrics['predicted_cost']:.4g} {metrics['unit']} (budget {metrics['budget']:.4g}, "
                           f"{metrics['cost_ratio']:.2f}× the reference SASRec)"),
        ("test HR@10", t["hr@10"]), ("test NDCG@10", t["ndcg@10"]),
        ("search + fine-tune seconds", metrics["total_seconds"]),
    ])
