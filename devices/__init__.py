"""Measurement targets: the local CPU, a CUDA GPU, an Android phone over adb, a Linux board over ssh.

`get_device("cpu:4").measure(Path("model.pte"), [ids])` returns `LatencyStats`. This package knows
artifact files and runtimes only (never easrec's models); runtimes (executorch, onnxruntime,
torch) are imported lazily, inside the function that needs them.
"""

from easrec.devices.base import Device, get_device, list_devices, parse_spec
from easrec.devices.runners import Runner, load_runner
from easrec.devices.timing import LatencyStats, summarize, time_callable

__all__ = [
    "Device", "LatencyStats", "Runner", "get_device", "list_devices", "load_runner", "parse_spec",
    "summarize", "time_callable",
]
