"""Helpers shared by the CLI command modules: JSON output and human summaries."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console(stderr=False)


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    """Add the `--json` flag every command takes."""
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout and nothing else")


def emit(args: argparse.Namespace, result: dict[str, Any], title: str | None = None, rows: list[tuple] | None = None) -> dict:
    """Print `result` as JSON (with --json) or as a short table of `rows` for a person."""
    if getattr(args, "json", False):
        sys.stdout.write(json.dumps(result, default=str) + "\n")
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


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def progress_enabled(args: argparse.Namespace) -> bool:
    """Progress bars go to stderr; they are off with --json so stdout stays one JSON object."""
    return not getattr(args, "json", False)
