"""On-device entry point: `python -m easrec.devices.remote info|measure ...`.

Run on the target (by the ssh device, or by hand); prints exactly one JSON object on stdout:
`info` -> {"info": {...}}; `measure` -> {"info": {...}, "stats": {...}}; a failure ->
{"error": "one line"} with exit status 2. Anything a runtime prints goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from easrec.devices.cpu import CpuDevice
from easrec.devices.runners import runtime_for
from easrec.errors import EasrecError
from easrec.io import package_version


def save_inputs(path: str | Path, inputs: list[np.ndarray]) -> None:
    """Write inputs to an .npz with keys input_0, input_1, ... (order kept, dtypes exact)."""
    np.savez(path, **{f"input_{i}": np.ascontiguousarray(x) for i, x in enumerate(inputs)})


def load_inputs(path: str | Path) -> list[np.ndarray]:
    """Read inputs written by `save_inputs`, in order."""
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = sorted(data.files, key=lambda k: int(k.rsplit("_", 1)[-1]))
            return [data[k] for k in keys]
    except (OSError, ValueError) as exc:
        raise EasrecError(f"{path}: reading inputs failed: {exc}") from exc


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send fd 1 to fd 2 (native libraries included) so stdout carries only the JSON."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _info(threads: int) -> dict[str, Any]:
    return CpuDevice(threads=threads).info()


def _measure(args: argparse.Namespace) -> dict[str, Any]:
    inputs = load_inputs(args.inputs)
    device = CpuDevice(threads=args.threads)
    stats = device.measure(
        Path(args.artifact), inputs, threads=args.threads, warmup=args.warmup,
        min_runs=args.min_runs, max_runs=args.max_runs, max_seconds=args.max_seconds,
    )
    info = device.info()
    info["runtime"] = runtime_for(args.artifact)
    info["runtime_version"] = _runtime_version(info["runtime"])
    return {"info": info, "stats": stats.to_dict()}


def _runtime_version(runtime: str) -> str | None:
    return package_version({"executorch": "executorch", "onnxruntime": "onnxruntime", "torch": "torch"}[runtime])


def build_parser() -> argparse.ArgumentParser:
    """Arguments of the on-device entry point."""
    p = argparse.ArgumentParser(prog="python -m easrec.devices.remote", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pi = sub.add_parser("info", help="print this machine's fingerprint")
    pi.add_argument("--threads", type=int, default=1)
    pm = sub.add_parser("measure", help="measure an artifact's latency")
    pm.add_argument("--artifact", required=True)
    pm.add_argument("--inputs", required=True, help=".npz written by save_inputs")
    pm.add_argument("--threads", type=int, default=1)
    pm.add_argument("--warmup", type=int, default=10)
    pm.add_argument("--min-runs", type=int, default=30)
    pm.add_argument("--max-runs", type=int, default=200)
    pm.add_argument("--max-seconds", type=float, default=10.0)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one command and print its JSON object; 0 on success, 2 on a reported failure."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    try:
        with _stdout_to_stderr():
            result = {"info": _info(args.threads)} if args.cmd == "info" else _measure(args)
        code = 0
    except EasrecError as exc:
        result, code = {"error": str(exc)}, 2
    except Exception as exc:  # report, do not dump a traceback on stdout
        logging.getLogger(__name__).debug("remote failure", exc_info=True)
        result, code = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0]}, 2
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
