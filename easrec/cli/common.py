"""Helpers shared by the CLI command modules: JSON output and human summaries."""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
from pathlib import Path
from typing import Any, Callable

from rich.console import Console
from rich.table import Table

from easrec.cli.types import finite_float, nonneg_int

console = Console(stderr=False)
# Progress bars and status lines go to stderr so stdout carries only the result (one JSON object with --json).
progress_console = Console(stderr=True)


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    """Add the `--json` flag every command takes."""
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout and nothing else")


def emit(args: argparse.Namespace, result: dict[str, Any], title: str | None = None, rows: list[tuple] | None = None) -> dict:
    """Print `result` as JSON (with --json) or as a short table of `rows` for a person."""
    if getattr(args, "json", False):
        # Strict JSON: a non-finite number (no measurement, a 0/0) is null, never `NaN`/`Infinity`.
        sys.stdout.write(json.dumps(json_safe(result), default=str, allow_nan=False) + "\n")
        return result
    if rows:
        table = Table(title=title, show_header=False)
        table.add_column("what", style="bold")
        table.add_column("value")
        for key, value in rows:
            table.add_row(str(key), _fmt(value))
        console.print(table)
    elif title:
        console.print(title)
    return result


def json_safe(value: Any) -> Any:
    """`value` with every non-finite float (NaN, ±inf, numpy's too) replaced by None, for strict JSON."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "dtype") and getattr(value, "ndim", None) == 0:  # a numpy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def progress_enabled(args: argparse.Namespace) -> bool:
    """Progress bars go to stderr; they are off with --json so stdout stays one JSON object."""
    return not getattr(args, "json", False)


DATA_OPTIONS = ("user_col", "item_col", "time_col", "rating_col", "sep", "min_rating", "k_core")


def add_data_args(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """DATA (a path or a name) and the reader/filter options shared by every command that loads data."""
    if required:
        parser.add_argument("data", metavar="DATA", help="path (.inter, ratings.dat, u.data, csv/tsv/parquet) or name (synthetic, ml-100k, ml-1m)")
    else:
        parser.add_argument("data", metavar="DATA", nargs="?", default="synthetic", help="path or name (default: synthetic)")
    g = parser.add_argument_group("data options")
    g.add_argument("--user-col", help="user column name (CSV/TSV/Parquet)")
    g.add_argument("--item-col", help="item column name")
    g.add_argument("--time-col", help="timestamp column name")
    g.add_argument("--rating-col", help="rating column name")
    g.add_argument("--sep", help="field separator for CSV/TSV")
    g.add_argument("--min-rating", type=finite_float, help="keep interactions with rating >= this")
    g.add_argument("--k-core", type=nonneg_int, default=0, help="keep users and items with at least k interactions")


def load_data_from_args(args: argparse.Namespace):
    """Load the data set named by DATA and the data options; returns (dataset, data config for the run)."""
    from easrec.data import data_config, load_dataset

    options = {k: getattr(args, k) for k in DATA_OPTIONS if getattr(args, k, None) not in (None, 0)}
    return load_dataset(args.data, **options), data_config(args.data, options)


def load_space(path: str | Path | None):
    """The search space in a JSON file (SearchSpace.to_dict), or the default space when `path` is None."""
    from easrec.errors import EasrecError
    from easrec.space import SearchSpace

    if not path:
        return SearchSpace()
    try:
        return SearchSpace.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except EasrecError as exc:  # a field out of range: name the file it came from
        raise EasrecError(f"{path}: {exc}", field=exc.field) from None
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise EasrecError(f"{path}: not a search space JSON ({exc})") from exc


def writes_run(command: str) -> Callable:
    """Decorator of a command that writes the run directory `args.out`.

    Before the command's work: the directory must be writable, no other easrec may be writing it
    (RUN/.easrec.lock, held until the command ends) and a finished run there is replaced only with
    `--force` or continued with `--resume`.
    """
    def wrap(func: Callable[[argparse.Namespace], dict]) -> Callable[[argparse.Namespace], dict]:
        @functools.wraps(func)
        def locked(args: argparse.Namespace) -> dict:
            from easrec.errors import EasrecError
            from easrec.io import ensure_writable
            from easrec.runlock import RunLock, check_overwrite

            force, resume = bool(getattr(args, "force", False)), bool(getattr(args, "resume", False))
            if force and resume:
                raise EasrecError("--force: contradicts --resume (--force starts the run over, --resume continues it)")
            out = ensure_writable(args.out)
            with RunLock(out, f"easrec {command}"):
                check_overwrite(out, force=force, resume=resume)
                return func(args)
        return locked
    return wrap
