"""The `easrec` command line: one module per command group, wired together here.

Each module in this package exposes ``register(subparsers)``, which adds its sub-commands and sets
``func`` on them: ``func(args) -> dict`` returns the JSON-able result and prints the human summary
itself only when ``args.json`` is false (``easrec.cli.common.emit`` does both).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from easrec.errors import EasrecError

# Command modules, in the order `easrec --help` lists them. A module that is missing (an optional
# part not installed) is skipped so the rest of the CLI still works.
COMMAND_MODULES = ["data", "train", "search", "profile", "devices", "export", "energy", "report", "run"]


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every command group registered."""
    parser = argparse.ArgumentParser(
        prog="easrec",
        description="Find, export and profile compact sequential recommenders for a real device.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress at INFO level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"easrec.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"easrec.cli.{name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `easrec` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        args.func(args)
    except EasrecError as exc:
        if args.debug:
            raise
        print(f"easrec: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("easrec: interrupted; finished work is kept (use --resume to continue)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
