"""`easrec devices`: list the devices reachable from this machine."""

from __future__ import annotations

import argparse

from easrec.cli.common import add_json_flag, emit


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `devices` command."""
    p = subparsers.add_parser("devices", help="list reachable devices (cpu, cuda GPUs, adb phones)",
                              description="List the devices reachable from here: this CPU, CUDA GPUs "
                                          "torch can see, and phones `adb devices` lists.")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> dict:
    """List devices; JSON: {"devices": [{"spec", "kind", "name", "status", ...}, ...]}."""
    from easrec.devices import list_devices

    devices = list_devices()
    rows = []
    for d in devices:
        extra = ", ".join(f"{k}={v}" for k, v in d.items() if k not in ("spec", "kind", "name", "status"))
        rows.append((d["spec"], f"{d['name']} [{d['status']}]" + (f" ({extra})" if extra else "")))
    return emit(args, {"devices": devices}, title="reachable devices", rows=rows)
