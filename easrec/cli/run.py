"""`easrec run`: the whole pipeline, resumable, with a final summary table."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from easrec.cli.common import add_json_flag, console, emit, progress_console, progress_enabled
from easrec.cli.devices import add_device_args, check_runtime, device_from_args, device_options_from_args, device_threads
from easrec.cli.types import nonneg_int, positive_float

# Files from which a stage resumes; a run started over with --force must not resume from the old run's.
RESUMABLE_FILES = ("baseline/checkpoint.pt", "search_checkpoint.pt", "finetune/checkpoint.pt")

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `run` command."""
    p = sub.add_parser("run", help="the whole pipeline: train, profile, search, export, bench, energy, report",
                       description="Data to a device-ready, measured model with a report. Every stage is resumable.")
    p.add_argument("data", metavar="DATA", nargs="?", default="synthetic", help="path or name (default: synthetic)")
    p.add_argument("--runtime", choices=["executorch", "onnxruntime"], default="executorch")
    p.add_argument("--budget-ratio", type=positive_float, default=None,
                   help="latency budget as a share of the baseline SASRec's (default 0.5); with --resume, search again at this budget "
                        "reusing the trained baseline and the LUT")
    p.add_argument("--preset", choices=["full", "quick"], default="full",
                   help="full: SASRec L200 d64 and the default space; quick: a small space and few epochs (the demo)")
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument("--lut-cache", help="directory of measured LUTs reused across runs (default ~/.cache/easrec/luts)")
    p.add_argument("--resume", type=Path, metavar="RUN", help="continue RUN from its first unfinished stage")
    p.add_argument("--force", action="store_true", help="start over in OUT even if it holds a finished run or a run with "
                                                        "other options (its stages are recomputed, files replaced)")
    p.add_argument("--out", type=Path, default=Path("runs/run"))
    add_device_args(p, default=None, device_help="cpu, cpu:N, cuda[:N], android:SERIAL, ssh:USER@HOST[:PORT] (default cpu)")
    add_json_flag(p)
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> dict:
    """Run (or resume) the pipeline and print the baseline-vs-subnet summary."""
    from rich.table import Table

    from easrec.errors import EasrecError
    from easrec.io import ensure_writable
    from easrec.pipeline import STAGES, Pipeline, RunOptions
    from easrec.runlock import RunLock

    show = progress_enabled(args)

    def on_stage(stage: str, status: str) -> None:
        if show:
            n = STAGES.index(stage) + 1
            progress_console.print(f"[bold]\\[{n}/{len(STAGES)}] {stage}[/bold]: {status}")

    if args.force and args.resume:
        raise EasrecError("--force: contradicts --resume (--force starts the run over, --resume continues it)")
    # Every option is checked before the run directory is locked (and so created).
    if args.resume:
        given = [flag for flag, attr in (("--device", "device"), ("--threads", "threads"), ("--cores", "cores"),
                                         ("--runner", "runner"), ("--ssh-key", "ssh_key"), ("--remote-python", "remote_python"))
                 if getattr(args, attr, None) is not None]
        if given:
            raise EasrecError(f"{given[0]}: --resume continues {args.resume} on the device it was started with "
                              "(see its pipeline.json); start a new --out for another device")
        if not Path(args.resume).is_dir():
            raise EasrecError(f"--resume {args.resume}: no such run directory")
        out = Path(args.resume)

        def open_pipeline() -> Pipeline:
            pipe = Pipeline.resume(out, on_stage)
            if args.budget_ratio is not None:
                pipe.change_budget(args.budget_ratio)
            return pipe
    else:
        args.budget_ratio = 0.5 if args.budget_ratio is None else args.budget_ratio
        # Built here (no connection is made) so a bad option fails before any stage runs.
        args.device = args.device or "cpu"
        device = device_from_args(args)
        check_runtime(device, args.runtime)
        opts = RunOptions(data=args.data, device=args.device, runtime=args.runtime, budget_ratio=args.budget_ratio,
                          preset=args.preset, threads=device_threads(device), seed=args.seed, lut_cache=args.lut_cache,
                          device_options=device_options_from_args(args, args.device))
        out = Path(args.out)

        def open_pipeline() -> Pipeline:
            return _open_new(out, opts, on_stage, force=args.force)
    ensure_writable(out, field="--resume" if args.resume else "--out")
    with RunLock(out, "easrec run", field="--resume" if args.resume else "--out"):
        pipe = open_pipeline()
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
    measured = summary.get("measured_ms")
    line = f"predicted {summary['predicted_ms']:.3f} ms"
    if measured is not None:
        line += f", measured {measured:.3f} ms"
    line += f" (budget {summary['budget_ms']:.3f} ms"
    if summary.get("measured_over_budget") is not None:
        line += f"; measured / budget {summary['measured_over_budget']:.2f}"
    line += ")"
    if summary.get("measured_ratio_over_budget_ratio") is not None:
        # Drift-free view: both models measured now, against the ratio --budget-ratio asked for.
        line += (f"; measured subnet / baseline {summary['measured_ratio']:.2f} against the budget's "
                 f"{summary['budget_ratio']:.2f} ({summary['measured_ratio_over_budget_ratio']:.2f}×)")
    console.print(line + f"; report: {summary['report']}")
    return summary


def _open_new(out: Path, opts, on_stage, force: bool):
    """The pipeline for `easrec run --out OUT`: OUT's own run continued (same options), a new one, or with --force
    a new one over whatever OUT holds; a finished run that `easrec run` did not write is never overwritten silently."""
    from easrec.errors import EasrecError
    from easrec.pipeline import STATE_FILE, Pipeline
    from easrec.runlock import finished_marker

    state, marker = out / STATE_FILE, finished_marker(out)
    if force:
        if state.exists() or marker is not None:
            log.warning("%s: --force: starting the run over (its stages are recomputed)", out)
            for name in RESUMABLE_FILES:
                (out / name).unlink(missing_ok=True)
        return Pipeline(out, opts, on_stage)
    if marker is not None and not state.exists():
        raise EasrecError(f"{out}: holds a finished run ({marker.relative_to(out)}) that `easrec run` did not write; "
                          "--force replaces it, or choose another --out", field="--out")
    return Pipeline.open(out, opts, on_stage)


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
