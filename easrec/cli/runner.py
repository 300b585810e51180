"""`easrec runner build`: build the native C++ runner (`runner/`) against the installed ExecuTorch."""

from __future__ import annotations

import argparse

from easrec.cli.common import add_json_flag, emit
from easrec.cli.types import positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `runner` command group (`runner build`)."""
    p = subparsers.add_parser("runner", help="build the native C++ runner for .pte artifacts",
                              description="The native runner (runner/, C++) loads a .pte, feeds item ids, prints "
                                          "top-k and per-iteration times; the android device runs the same "
                                          "source cross-compiled (runner/README.md).")
    sub = p.add_subparsers(dest="runner_command", metavar="SUBCOMMAND")
    b = sub.add_parser("build", help="build runner/ with CMake against the installed ExecuTorch wheel",
                       description="Configure and build runner/ with CMake against the ExecuTorch wheel's "
                                   "headers and libraries (share/cmake/executorch-config.cmake). Needs cmake "
                                   "and a C++17 compiler; records the ExecuTorch version in the build folder.")
    b.add_argument("--out", metavar="DIR", default=None, help="build folder (default build/runner in the repository)")
    b.add_argument("--jobs", type=positive_int, default=2, metavar="N", help="parallel compile jobs (default 2)")
    add_json_flag(b)
    b.set_defaults(func=build)
    p.set_defaults(func=lambda args: p.print_help())


def build(args: argparse.Namespace) -> dict:
    """JSON: {"binary": path, "build_dir": path, "executorch_version": ..., "etdump": bool}."""
    from easrec.devices.native_runner import build_runner, read_build_record

    binary = build_runner(args.out, jobs=args.jobs)
    record = read_build_record(binary.parent)
    result = {"binary": str(binary), "build_dir": str(binary.parent),
              "executorch_version": record.get("executorch_version"), "etdump": record.get("etdump") == "ON",
              "executorch_dir": record.get("executorch_dir")}
    rows = [("binary", result["binary"]), ("ExecuTorch", result["executorch_version"]),
            ("ETDump", "yes" if result["etdump"] else "no (the package ships no etdump library)")]
    return emit(args, result, title="native runner built", rows=rows)
