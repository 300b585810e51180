"""`easrec report RUN`: RUN/report.html (self-contained) and RUN/report.md."""

from __future__ import annotations

import argparse

from easrec.cli.common import add_json_flag, emit


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `report` command."""
    p = subparsers.add_parser(
        "report", help="write RUN/report.html (self-contained, with plots) and RUN/report.md",
        description="Build the report of a run directory from what it holds: metrics.json, arch.json, config.json "
                    "and, when present, artifacts.json, bench.json, energy.json, lut.json, commands.json, "
                    "data_stats.json (see easrec.profiling.report). Missing parts get a section saying so.")
    p.add_argument("run", metavar="RUN", help="run directory (train or search output)")
    p.add_argument("--baseline", metavar="RUN", help="the baseline SASRec run to compare with (default: RUN/baseline when present, as `easrec run` writes it)")
    p.add_argument("--lut", metavar="LUT", help="latency LUT (default RUN/lut.json when present)")
    p.add_argument("--out", metavar="DIR", help="write the two files here instead of RUN")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> dict:
    """JSON: {"html": path, "md": path, "inputs": {role: file or null}}."""
    from pathlib import Path

    from easrec.io import ensure_writable
    from easrec.profiling.report import RUN_FILES, write_report

    ensure_writable(args.out or args.run, field="--out" if args.out else "RUN")
    if args.baseline is None and (Path(args.run) / "baseline" / "metrics.json").exists():
        args.baseline = str(Path(args.run) / "baseline")
    html_path, md_path = write_report(args.run, baseline_run=args.baseline, lut=args.lut, out_dir=args.out)
    inputs = {role: (str(Path(args.run) / name) if (Path(args.run) / name).is_file() else None)
              for role, name in RUN_FILES.items()}
    if args.lut:
        inputs["lut"] = args.lut
    result = {"html": str(html_path), "md": str(md_path), "baseline": args.baseline, "inputs": inputs}
    rows = [("report", str(html_path)), ("markdown", str(md_path))]
    rows += [(role, path or "(absent)") for role, path in inputs.items()]
    return emit(args, result, title="report", rows=rows)
