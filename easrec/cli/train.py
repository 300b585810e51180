"""`easrec train` and `easrec evaluate`."""

from __future__ import annotations

import argparse
from pathlib import Path

from easrec.cli.common import add_data_args, add_json_flag, emit, load_data_from_args, progress_console, progress_enabled


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `train` and `evaluate` commands."""
    p = sub.add_parser("train", help="train a SASRec on a data set", description="Train SASRec with early stopping on validation NDCG@10.")
    add_data_args(p)
    p.add_argument("--max-len", type=int, default=200, help="sequence length L (newest items kept)")
    p.add_argument("--d", type=int, default=64, help="model width")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--ffn", type=int, default=256, help="FFN inner width")
    p.add_argument("--attention", choices=["softmax", "linear"], default="softmax")
    p.add_argument("--gates", action="store_true", help="add EASRec's data-aware gates to every block")
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--epochs", type=int, default=200, help="maximum epochs (early stopping usually ends sooner)")
    p.add_argument("--patience", type=int, default=10, help="epochs without validation NDCG@10 gain before stopping")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--loss", choices=["ce", "bce"], default="ce", help="full-softmax cross-entropy or BCE with sampled negatives")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (results repeat for a seed and thread count)")
    p.add_argument("--keep-seen", action="store_true", help="rank items already in the history too (RecBole's convention)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--out", type=Path, default=Path("runs/train"))
    add_json_flag(p)
    p.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="evaluate a trained run on the test split")
    e.add_argument("run", type=Path, metavar="RUN")
    e.add_argument("--protocol", choices=["full", "sampled-100"], default="full")
    e.add_argument("--keep-seen", action="store_true")
    add_json_flag(e)
    e.set_defaults(func=cmd_evaluate)


def cmd_train(args: argparse.Namespace) -> dict:
    """Train and print the test metrics."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from easrec.train.run import sasrec_arch, train_run
    from easrec.train.trainer import TrainConfig

    dataset, data_cfg = load_data_from_args(args)
    arch = sasrec_arch(args.max_len, args.d, args.layers, args.heads, args.ffn, args.attention, args.gates)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                      patience=args.patience, loss=args.loss, seed=args.seed, threads=args.threads, keep_seen=args.keep_seen)
    progress = Progress(TextColumn("[bold]train"), BarColumn(), TextColumn("epoch {task.completed}/{task.total}"),
                        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=progress_console, disable=not progress_enabled(args), transient=True)
    with progress:
        task = progress.add_task("train", total=args.epochs, info="")
        def on_epoch(rec: dict) -> None:
            progress.update(task, completed=rec["epoch"],
                            info=f"loss {rec['loss']:.3f}  valid ndcg@10 {rec['ndcg@10']:.4f}  {rec['seconds']:.1f}s/epoch")
        metrics = train_run(dataset, data_cfg, arch, cfg, args.out, dropout=args.dropout, resume=args.resume, on_epoch=on_epoch)
    t = metrics["test"]
    result = {k: v for k, v in metrics.items() if k != "history"}
    result["run"] = str(args.out)
    return emit(args, result, f"SASRec on {dataset.name}: {args.out}", [
        ("users / items", f"{dataset.n_users} / {dataset.n_items}"),
        ("architecture", arch.describe()),
        ("best epoch", f"{metrics['best_epoch']} of {metrics['epochs']}"),
        ("test HR@10", t["hr@10"]), ("test NDCG@10", t["ndcg@10"]), ("test MRR@10", t["mrr@10"]),
        ("seconds / epoch", sum(metrics["epoch_seconds"]) / max(len(metrics["epoch_seconds"]), 1)),
        ("train seconds", metrics["train_seconds"]),
    ])


def cmd_evaluate(args: argparse.Namespace) -> dict:
    """Evaluate RUN/model.pt on the test split."""
    from easrec.train.checkpoint import load_model, load_run_dataset
    from easrec.train.evaluate import evaluate_model

    model = load_model(args.run)
    dataset = load_run_dataset(args.run)
    if dataset.n_items != model.n_items:
        from easrec.errors import EasrecError

        raise EasrecError(f"{args.run}: model has {model.n_items} items but the data set has {dataset.n_items} (field 'n_items')")
    metrics = evaluate_model(model, dataset.split(), "test", keep_seen=args.keep_seen, protocol=args.protocol,
                             popularity=dataset.item_popularity())
    result = {"test": metrics, "protocol": args.protocol, "keep_seen": args.keep_seen, "run": str(args.run)}
    return emit(args, result, f"{args.run} ({args.protocol})", [(k, v) for k, v in metrics.items() if k.endswith("@10")])
