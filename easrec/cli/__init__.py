"""The `easrec` command line: one module per command group, wired together here.

Each module in this package exposes ``register(subparsers)``, which adds its sub-commands and sets
``func`` on them: ``func(args) -> dict`` returns the JSON-able result and prints the human summary
itself only when ``args.json`` is false (``easrec.cli.common.emit`` does both).

Every failure a user can cause ends here as one line on stderr, ``easrec: error: ...``, exit code 2
(``--debug`` re-raises for the traceback): an ``EasrecError``, a bad option value caught by argparse,
or an ``OSError`` (permission, full disk, missing folder) naming the path. With ``--json`` the same
error is also printed on stdout as one JSON object ``{"error": ..., "field": ...}``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import re
import sys

from easrec.errors import EasrecError

# Command modules, in the order `easrec --help` lists them. A module that is missing (an optional
# part not installed) is skipped so the rest of the CLI still works.
COMMAND_MODULES = ["data", "train", "compare", "search", "profile", "devices", "export", "energy", "report", "run",
                   "runner"]

# What to do after Ctrl-C, per command: only some commands take --resume.
INTERRUPT_HINTS = {
    "train": "rerun with --resume to continue from the last checkpoint",
    "search": "rerun with --resume to continue from the last checkpoint",
    "profile": "rerun the same command to continue: measured entries are kept in --out",
    "run": "continue with `easrec run --resume {out}`",
}
DEFAULT_INTERRUPT_HINT = "files already written are complete (writes are atomic)"


class UsageError(Exception):
    """A command line argparse refused (unknown option, bad value); carries argparse's message and the parser's prog."""

    def __init__(self, message: str, prog: str):
        super().__init__(message)
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors reach `main` as UsageError, so they are printed like every other error."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(message, self.prog)


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every command group registered."""
    parser = _Parser(
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
    _accept_global_flags(sub)
    return parser


def _accept_global_flags(sub: argparse._SubParsersAction) -> None:
    """`--debug` and `-v` after the command too (`easrec train DATA --debug`), in every command and sub-command.

    SUPPRESS keeps a command's parser from resetting a flag given before the command.
    """
    for cmd in set(sub.choices.values()):
        have = {o for a in cmd._actions for o in a.option_strings}
        if "--debug" not in have:
            cmd.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks and debug logs")
        if "--verbose" not in have and "-v" not in have:
            cmd.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log progress at INFO level")
        for action in cmd._actions:
            if isinstance(action, argparse._SubParsersAction):
                _accept_global_flags(action)


def _usage_message(exc: UsageError) -> tuple[str, str | None]:
    """argparse's 'argument --k: must be ...' as '--k must be ...' (the style of every other option error), and the option."""
    message = str(exc)
    found = re.match(r"argument ([^:]+): (.*)", message)
    field = None
    if found:
        names = found.group(1).split("/")
        field = next((n for n in names if n.startswith("--")), names[0])
        why = found.group(2)
        message = f"{field} {why}" if why.startswith("must ") else f"{field}: {why}"
    return f"{message} (see `{exc.prog} --help`)", field


def _os_error_message(exc: OSError, args: argparse.Namespace) -> tuple[str, str | None]:
    """'<path>: <reason>' for an OSError; the path is the command's output when the error names none."""
    from easrec.io import os_error_reason

    path = exc.filename or getattr(args, "out", None)
    reason = os_error_reason(exc)
    return (f"{path}: {reason}" if path is not None else reason), None


def _report(message: str, field: str | None, as_json: bool) -> int:
    """Print one error line on stderr (and one JSON object on stdout with --json); the exit code 2."""
    message = " ".join(str(message).split()) or "unknown error"  # one line, whatever the message held
    if as_json:
        sys.stdout.write(json.dumps({"error": message, "field": field}) + "\n")
        sys.stdout.flush()
    print(f"easrec: error: {message}", file=sys.stderr)
    return 2


def _terminate_like_interrupt() -> None:
    """SIGTERM (a scheduler stopping the job) takes the same path as Ctrl-C: checkpoint, then exit."""
    import signal
    import threading

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `easrec` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        message, field = _usage_message(exc)
        return _report(message, field, "--json" in argv)
    level = logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    _terminate_like_interrupt()
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    as_json = bool(getattr(args, "json", False))
    try:
        args.func(args)
    except EasrecError as exc:
        if args.debug:
            raise
        return _report(str(exc), exc.field, as_json)
    except OSError as exc:
        if args.debug:
            raise
        message, field = _os_error_message(exc, args)
        return _report(message, field, as_json)
    except KeyboardInterrupt:
        if args.debug:
            raise
        # `run --resume RUN` continues RUN, not --out.
        out = getattr(args, "resume", None) if args.command == "run" and getattr(args, "resume", None) else getattr(args, "out", "RUN")
        hint = INTERRUPT_HINTS.get(args.command, DEFAULT_INTERRUPT_HINT).format(out=out)
        print(f"easrec: interrupted; finished work is kept ({hint})", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
