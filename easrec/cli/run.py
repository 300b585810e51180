"""`easrec run`: the whole pipeline, resumable, with a final summary table."""

from __future__ import annotations

import argparse
from pathlib import Path

from easrec.cli.common import add_json_flag, console, emit, progress_console, progress_enabled


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `run` command."""
    p = sub.add_parser("run", help="the whole pipeline: train, profile, search, export, bench, energy, report",
                       description="Data to a device-ready, measured model with a report. Every stage is resumable.")
    p.add_argument("data", metavar="DATA", nargs="?", default="synthetic", help="path or name (default: synthetic)")
    p.add_argument("--device", default="cpu", help="cpu, cpu:N, cuda, android:SERIAL, ssh:USER@HOST")
    p.add_argument("--runtime", choices=["executorch", "onnxruntime"], default="executorch")
    p.add_argument("--budget-ratio", type=float, default=None,
                   help="latency budget as a share of the baseline SASRec's (default 0.5); with --resume, search again at this budget "
                        "reusing the trained baseline and the LUT")
    p.add_argument("--preset", choices=["full", "quick"], default="full",
                   help="full: SASRec L200 d64 and the default space; quick: a small space and few epochs (the demo)")
    p.add_argument("--threads", type=int, default=1, help="runtime threads on the device")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lut-cache", help="directory of measured LUTs reused across runs (default ~/.cache/easrec/luts)")
    p.add_argument("--resume", type=Path, metavar="RUN", help="continue RUN from its first unfinished stage")
    p.add_argument("--out", type=Path, default=Path("runs/run"))
    add_json_flag(p)
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> dict:
    """Run (or resume) the pipeline and print the baseline-vs-subnet summary."""
    from rich.table import Table

    from easrec.errors import EasrecError
    from easrec.pipeline import STAGES, Pipeline, RunOptions

    show = progress_enabled(args)

    def on_stage(stage: str, status: str) -> None:
        if show:
            n = STAGES.index(stage) + 1
            progress_console.print(f"[bold]\\[{n}/{len(STAGES)}] {stage}[/bold]: {status}")

    if args.budget_ratio is not None and not args.budget_ratio > 0:
        raise EasrecError(f"--budget-ratio must be positive, got {args.budget_ratio}")
    if args.resume:
        pipe = Pipeline.resume(args.resume, on_stage)
        if args.budget_ratio is not None:
            pipe.change_budget(args.budget_ratio)
    else:
        args.budget_ratio = 0.5 if args.budget_ratio is None else args.budget_ratio
        if not args.budget_ratio > 0:
            raise EasrecError(f"--budget-ratio must be positive, got {args.budget_ratio}")
        opts = RunOptions(data=args.data, device=args.device, runtime=args.runtime, budget_ratio=args.budget_ratio,
                          preset=args.preset, threads=args.threads, seed=args.seed, lut_cache=args.lut_cache)
        pipe = Pipeline.open(args.out, opts, on_stage)
    with progress_console.status("running", spinner="dots") if show else _null():
        summary = pipe.run()
    if args.json:
        return emit(args, summary)
    models = summary["models"]
    table = Table(title=f"easrec run: {summary['run']}")
    table.add_column("")
    for name in models:
        table.add_column(name, overflow="fold")

    def cell(row: dict, key: str, spec: str, suffix: str = "") -> str:
        v = row.get(key)
        return "–" if v is None else format(v, spec) + suffix

    lines = [
        ("architecture", lambda r: r.get("arch") or "–"),
        ("test NDCG@10", lambda r: cell(r, "ndcg@10", ".4f")),
        ("test HR@10", lambda r: cell(r, "hr@10", ".4f")),
        ("latency fp32", lambda r: cell(r, "ms", ".3f", " ms")),
        ("latency int8", lambda r: cell(r, "ms_int8", ".3f", " ms")),
        ("NDCG@10 int8 artifact", lambda r: cell(r, "ndcg@10_int8", ".4f")),
        ("energy / inference", lambda r: cell(r, "mj", ".3f", f" mJ ({r.get('energy_source')})")),
        ("size fp32 / int8", lambda r: f"{cell(r, 'bytes', ',d')} / {cell(r, 'bytes_int8', ',d')} B"),
    ]
    for label, fn in lines:
        table.add_row(label, *(fn(row) for row in models.values()))
    console.print(table)
    console.print(f"predicted {summary['predicted_ms']:.3f} ms (budget {summary['budget_ms']:.3f} ms); report: {summary['report']}")
    return summary


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
