"""Measurement targets: the local CPU, a CUDA GPU, an Android phone over adb, a Linux board over ssh.

`get_device("cpu:4").measure(Path("model.pte"), [ids])` returns `LatencyStats`. This package knows
artifact files and runtimes only (never easrec's models); runtimes (executorch, onnxruntime,
torch) are imported lazily, inside the function that needs them.
"""

from __future__ import annotations

import inspect
from typing import Any

from easrec.devices.android import AndroidDevice
from easrec.devices.base import Device, list_devices, parse_spec
from easrec.devices.cpu import CpuDevice
from easrec.devices.cuda import CudaDevice
from easrec.devices.runners import Runner, load_runner
from easrec.devices.ssh import SshDevice
from easrec.devices.timing import LatencyStats, MeasurePolicy, summarize, time_callable
from easrec.errors import EasrecError

__all__ = [
    "Device", "LatencyStats", "MeasurePolicy", "Runner", "device_options", "get_device", "list_devices", "load_runner",
    "parse_spec",
    "summarize", "time_callable",
]

_BACKENDS: dict[str, type[Device]] = {"cpu": CpuDevice, "cuda": CudaDevice, "android": AndroidDevice, "ssh": SshDevice}
# Constructor parameters that come from the spec itself (cuda:N, android:SERIAL, ssh:USER@HOST:PORT).
_FROM_SPEC = {"self", "index", "serial", "host", "user", "port"}


def device_options(kind: str) -> tuple[str, ...]:
    """Keyword options a device kind takes besides its spec (every kind takes `threads`)."""
    params = inspect.signature(_BACKENDS[kind].__init__).parameters
    names = [n for n, p in params.items() if n not in _FROM_SPEC and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    return tuple(sorted(set(names) | {"threads"}))


def get_device(spec: str, **options: Any) -> Device:
    """Build the Device a spec names (cpu, cpu:N, cuda[:N], android:SERIAL, ssh:USER@HOST[:PORT]).

    `threads` is taken by every kind and kept as `device.threads`: the cpu device fixes it for
    every runtime; the others pass it to each measurement (easrec_runner's --threads, the
    remote entry point's --threads, ONNX Runtime's host threads on cuda). Any other option a kind
    does not take is an EasrecError naming it, not a TypeError.
    """
    kind, fields = parse_spec(spec)
    threads = options.pop("threads", None)
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise EasrecError(f"device {spec}: threads must be a positive integer, got {threads!r}")
        if "threads" in fields and fields["threads"] != threads:
            raise EasrecError(f"device {spec}: the spec says {fields['threads']} thread(s) but threads={threads} was given")
    accepted = device_options(kind)
    unknown = sorted(k for k in options if k not in accepted)
    if unknown:
        raise EasrecError(f"device {spec}: {kind} devices do not take option(s) {', '.join(unknown)} "
                          f"(they take: {', '.join(accepted)})")
    if kind == "cpu":
        return CpuDevice(threads=fields.get("threads", threads or 1), **options)
    if kind == "cuda":
        device: Device = CudaDevice(index=fields["index"], **options)
    elif kind == "android":
        device = AndroidDevice(fields["serial"], **options)
    else:
        device = SshDevice(host=fields["host"], user=fields["user"], port=fields["port"], **options)
    # Non-cpu backends take threads per measurement; the device carries it so callers pass one value.
    device.threads = threads or 1
    return device
