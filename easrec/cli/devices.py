"""`easrec devices`: list the devices reachable from this machine; and the device options every measuring command shares.

`add_device_args` adds --device/--threads/--cores/--runner/--ssh-key/--remote-python to a parser;
`device_from_args` turns them into a Device (one line naming the flag when the kind does not take it).
"""

from __future__ import annotations

import argparse

from easrec.cli.common import add_json_flag, emit
from easrec.cli.types import positive_int


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


# --- device options shared by every command that measures -------------------------------------

# (flag, attribute on args, get_device option, kinds that take it, what it is for)
DEVICE_FLAGS = (
    ("--cores", "cores", "cores", ("cpu",), "core pinning is set on this machine's cpu device only"),
    ("--runner", "runner", "runner", ("android", "ssh"), "only android:SERIAL and ssh:USER@HOST run the native easrec_runner"),
    ("--ssh-key", "ssh_key", "identity", ("ssh",), "only ssh:USER@HOST uses a private key"),
    ("--remote-python", "remote_python", "python", ("ssh",), "only ssh:USER@HOST runs a remote Python"),
)


def _cores(text: str) -> list[int]:
    """`0,1` or `2-3` or `0,2-3` → sorted core ids."""
    cores: set[int] = set()
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            cores.update(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected core ids like 0,1 or 2-3, got {text!r}") from None
    if not cores:
        raise argparse.ArgumentTypeError(f"expected core ids like 0,1 or 2-3, got {text!r}")
    return sorted(cores)


def add_device_args(parser: argparse.ArgumentParser, *, default: str | None = "cpu", device_help: str | None = None,
                    threads_help: str | None = None) -> None:
    """--device, --threads, --cores, --runner, --ssh-key, --remote-python: one set for every measuring command."""
    g = parser.add_argument_group("device options")
    g.add_argument("--device", default=default, metavar="SPEC",
                   help=device_help or f"cpu, cpu:N, cuda[:N], android:SERIAL, ssh:USER@HOST[:PORT] (default {default})")
    g.add_argument("--threads", type=positive_int, default=None, metavar="N",
                   help=threads_help or "runtime threads on the device, fixed for every measurement (default: N of cpu:N, else 1)")
    g.add_argument("--cores", type=_cores, default=None, metavar="LIST", help="cpu: pin measurements to these cores (e.g. 0,1 or 2-3)")
    g.add_argument("--runner", default=None, metavar="PATH", help="android, ssh: easrec_runner built for the device from runner/ (see runner/README.md); "
                        "on ssh it replaces the remote Python")
    g.add_argument("--ssh-key", default=None, metavar="FILE", help="ssh: private key (key authentication only)")
    g.add_argument("--remote-python", default=None, metavar="PATH", help="ssh: the board's Python with easrec installed (default python3)")


def device_options_from_args(args: argparse.Namespace, spec: str) -> dict:
    """The get_device options the device flags name (threads excluded); a flag the kind does not take is an error."""
    from easrec.devices import parse_spec
    from easrec.errors import EasrecError

    kind, _ = parse_spec(spec)
    options = {}
    for flag, attr, option, kinds, why in DEVICE_FLAGS:
        value = getattr(args, attr, None)
        if value is None:
            continue
        if kind not in kinds:
            raise EasrecError(f"{flag}: not supported by device {spec} ({why})")
        options[option] = value
    return options


def device_from_args(args: argparse.Namespace, spec: str | None = None, threads: int | None = None,
                     kinds: tuple[str, ...] | None = None, what: str = "this command"):
    """The Device that --device (or `spec`) and the device flags name; `threads` is the default for --threads."""
    from easrec.devices import get_device, parse_spec
    from easrec.errors import EasrecError

    spec = spec or getattr(args, "device", None) or "cpu"
    kind, fields = parse_spec(spec)
    if kinds is not None and kind not in kinds:
        raise EasrecError(f"--device {spec}: {what} runs on {', '.join(kinds)} devices, not {kind}")
    given = getattr(args, "threads", None)
    if given is not None and given < 1:
        raise EasrecError(f"--threads must be >= 1, got {given}")
    if given is not None and "threads" in fields and fields["threads"] != given:
        raise EasrecError(f"--threads {given} contradicts --device {spec} (cpu:N already sets N threads)")
    if given is None and "threads" not in fields:
        given = threads
    options = device_options_from_args(args, spec)
    return get_device(spec, **({"threads": given} if given is not None else {}), **options)


def device_threads(device) -> int:
    """The thread count a device measures with (`cpu:N`, --threads, else 1)."""
    return int(getattr(device, "threads", None) or 1)


def check_runtime(device, runtime: str) -> None:
    """One line when a device kind cannot run a runtime's artifacts (before anything is lowered)."""
    from easrec.errors import EasrecError

    if device.kind == "cuda" and runtime == "executorch":
        raise EasrecError(f"--runtime executorch: {device.name} runs .pt2 and .onnx artifacts, not .pte "
                          "(use --runtime onnxruntime or torch)")
    if device.kind == "android" and runtime != "executorch":
        raise EasrecError(f"--runtime {runtime}: {device.name} runs ExecuTorch .pte artifacts only (use --runtime executorch)")
