"""`easrec search`: find the most accurate subnet under a device budget."""

from __future__ import annotations

import argparse
from pathlib import Path

from easrec.cli.common import (add_data_args, add_json_flag, emit, load_data_from_args, load_space, progress_console,
                               progress_enabled, writes_run)
from easrec.cli.types import nonneg_int, positive_float, positive_int, probability


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `search` command."""
    p = sub.add_parser("search", help="search a subnet under a latency / energy / FLOPs budget",
                       description="EASRec search over the elastic SASRec supernet, then fine-tune the chosen subnet.")
    add_data_args(p)
    b = p.add_mutually_exclusive_group(required=True)
    b.add_argument("--budget-ratio", type=positive_float, help="budget = R × the predicted cost of the reference (default the SASRec "
                                                       "L200 d64 2×2 heads FFN 256; see --reference), by the same cost model")
    b.add_argument("--budget-ms", type=positive_float, help="latency budget in ms (needs --lut)")
    b.add_argument("--budget-mflops", type=positive_float, help="FLOPs budget in MFLOPs (analytic cost model)")
    b.add_argument("--budget-mj", type=positive_float, help="energy budget in mJ (needs an energy --lut)")
    p.add_argument("--lut", type=Path, help="latency/energy table from `easrec profile` (default: analytic FLOPs); "
                                             "the search runs over the LUT's own space")
    p.add_argument("--space", type=Path, metavar="FILE", help="search space JSON (SearchSpace.to_dict); with --lut it must be "
                                                              "the LUT's (default: the LUT's space, else the default space)")
    p.add_argument("--reference", type=Path, metavar="RUN", help="trained run whose arch.json is the --budget-ratio reference "
                                                                 "(default: the reference SASRec)")
    p.add_argument("--device", default="cpu", metavar="SPEC",
                   help="the device the --lut must have been measured on: cpu (this machine, default), cpu:N, cuda[:N], "
                        "android:SERIAL, ssh:USER@HOST[:PORT]; cpu:N also checks the thread count")
    p.add_argument("--trust-lut", action="store_true", help="search with a --lut measured on another device (no fingerprint check)")
    p.add_argument("--strategy", choices=["gates"], default="gates")
    p.add_argument("--constraint", choices=["dynamic", "paper"], default="dynamic")
    p.add_argument("--no-gates", action="store_true", help="ablation: supernet without the data-aware gates")
    p.add_argument("--gate-input", choices=["mean", "position"], default=None,
                   help="what the gates read: the causal running mean of the history or each position's embedding (the "
                        "paper's); default: the space's (mean). With --lut it must be the table's")
    p.add_argument("--retrain", choices=["inherit", "scratch"], default="inherit", help="fine-tune inherited weights or retrain from scratch")
    p.add_argument("--search-epochs", type=positive_int, default=20)
    p.add_argument("--finalist-epochs", type=nonneg_int, default=2,
                   help="fine-tune epochs per finalist (the α choice and, per length, the costliest and widest SASRec shapes that fit); "
                        "the best on validation is kept. 0: take α's choice")
    p.add_argument("--epochs", type=positive_int, default=200, help="maximum fine-tuning epochs (early stopping)")
    p.add_argument("--patience", type=positive_int, default=10, help="fine-tune: evaluations without a validation gain")
    p.add_argument("--targets", choices=["last", "all"], default="last", help="fine-tune samples (see `easrec train --targets`)")
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--lr", type=positive_float, default=1e-3)
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="fine-tune precision (see `easrec train --precision`); the supernet search itself runs in fp32")
    p.add_argument("--dropout", type=probability, default=0.5, help="dropout on embeddings and residual branches (0.5 measured best on ml-100k)")
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument("--threads", type=positive_int, help="torch threads for search and fine-tuning (not the device's)")
    p.add_argument("--keep-seen", action="store_true")
    p.add_argument("--resume", action="store_true", help="continue an interrupted search in OUT")
    p.add_argument("--force", action="store_true", help="replace a finished run in OUT (without it, OUT/metrics.json is never overwritten)")
    p.add_argument("--out", type=Path, default=Path("runs/search"))
    add_json_flag(p)
    p.set_defaults(func=cmd_search)


@writes_run("search")
def cmd_search(args: argparse.Namespace) -> dict:
    """Run the search and print the chosen architecture, its cost and test metrics."""

    from rich.progress import Progress, TextColumn, TimeElapsedColumn

    from easrec.search.gates import GatesConfig
    from easrec.search.run import load_cost_model, resolve_budget, search_run
    from easrec.train.trainer import TrainConfig

    # Every file is checked before the data set loads, so a wrong LUT fails at once.
    space = load_space(args.space) if args.space else None
    if args.lut is not None:
        _check_lut(args, space)
    reference = _reference(args.reference) if args.reference else None
    dataset, data_cfg = load_data_from_args(args)
    cost_model = load_cost_model(space, dataset.n_items, args.lut, gates=False if args.no_gates else None,
                                 gate_input=args.gate_input)
    if args.budget_ratio is not None:
        budget = resolve_budget(cost_model, ratio=args.budget_ratio, reference=reference)
    else:
        unit, value = next((u, v) for u, v in (("ms", args.budget_ms), ("MFLOPs", args.budget_mflops), ("mJ", args.budget_mj)) if v is not None)
        budget = resolve_budget(cost_model, value=value, unit=unit)
    gcfg = GatesConfig(epochs=args.search_epochs, batch_size=args.batch_size, lr=args.lr, constraint=args.constraint,
                       seed=args.seed, threads=args.threads, keep_seen=args.keep_seen)
    ft = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, patience=args.patience, targets=args.targets, seed=args.seed,
                     threads=args.threads, keep_seen=args.keep_seen, precision=args.precision).validate()
    progress = Progress(TextColumn("[bold]{task.description}"), TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                        console=progress_console, disable=not progress_enabled(args), transient=True)
    with progress:
        tasks = {"search": progress.add_task(f"search 0/{args.search_epochs}", info=""),
                 "finalists": progress.add_task("finalists", info="waiting"),
                 "finetune": progress.add_task("fine-tune", info="waiting")}
        def on_epoch(stage: str, rec: dict) -> None:
            if stage == "search":
                progress.update(tasks[stage], description=f"search {rec['epoch']}/{args.search_epochs}",
                                info=f"E[cost] {rec['expected_cost']:.4g} {cost_model.unit}  λ {rec['lambda']:.3g}  {rec['arch']}")
            elif stage == "finalists":
                progress.update(tasks[stage], description=f"finalist epoch {rec['epoch']}/{args.finalist_epochs}",
                                info=f"{rec['arch']}  valid ndcg@10 {rec['ndcg@10']:.4f}")
            else:
                progress.update(tasks[stage], description=f"fine-tune {rec['epoch']}",
                                info=f"valid ndcg@10 {rec['ndcg@10']:.4f}")
        metrics = search_run(dataset, data_cfg, args.out, cost_model=cost_model, budget=budget, gates_cfg=gcfg,
                             finetune=ft, retrain=args.retrain, dropout=args.dropout, resume=args.resume, on_epoch=on_epoch,
                             reference=reference, finalist_epochs=args.finalist_epochs)
    t = metrics["test"]
    result = {**metrics, "run": str(args.out)}
    return emit(args, result, f"search on {dataset.name}: {args.out}", [
        ("architecture", metrics["arch_description"]),
        ("predicted cost", f"{metrics['predicted_cost']:.4g} {metrics['unit']} (budget {metrics['budget']:.4g}, "
                           f"{metrics['cost_ratio']:.2f}× the {'reference ' + args.reference.name if args.reference else 'reference SASRec'})"),
        ("test HR@10", t["hr@10"]), ("test NDCG@10", t["ndcg@10"]),
        ("search + fine-tune seconds", metrics["total_seconds"]),
    ])


def _check_lut(args: argparse.Namespace, space) -> None:
    """The LUT's file, space (against --space) and device (against --device, unless --trust-lut), in one line each."""
    from easrec.cli.lutcheck import check_fingerprint, check_space, expected_fingerprint
    from easrec.devices import get_device, parse_spec
    from easrec.profiling.lut import LatencyTable

    table = LatencyTable.load(args.lut)
    if space is not None:
        check_space(table, space)
    if args.trust_lut:
        return
    # The thread count is the deployment's choice, stored in the LUT; it is checked only when cpu:N names one.
    threads = parse_spec(args.device)[1].get("threads")
    device = get_device(args.device)
    expected = expected_fingerprint(device, table.device["runtime"], table.device["dtype"], threads)
    check_fingerprint(table, expected, hint=" (--trust-lut searches with it anyway)")


def _reference(run: Path):
    """The architecture of a trained run (RUN/arch.json), the --budget-ratio reference."""
    from easrec.errors import EasrecError
    from easrec.space import Arch
    from easrec.io import read_json

    path = Path(run) / "arch.json"
    if not Path(run).is_dir():
        raise EasrecError(f"--reference {run}: no such run directory")
    return Arch.from_dict(read_json(path, "arch.json of the --reference run"), source=str(path))
