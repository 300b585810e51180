"""Latency of an exported artifact on a device (what `easrec bench` prints).

With its sidecar (`FILE.json`) the input is a realistic history of popular items; without one (a
`.pte`, `.onnx` or `.pt2` from anywhere) the inputs are derived from the graph itself: the runtime's
own input metadata gives each input's dtype and shape.
"""

from __future__ import annotations

import logging
import os
import resource
from pathlib import Path
from typing import Any

import numpy as np

from easrec.errors import EasrecError

log = logging.getLogger(__name__)

# Ids used for an integer input of an artifact without a sidecar: small enough for any catalogue of at
# least this many items (the catalogue size is not in the graph's signature).
GRAPH_IDS = 32


def artifact_inputs(path: str | Path) -> list[np.ndarray]:
    """A realistic input: from the sidecar when there is one, else from the graph's input metadata."""
    from easrec.export.artifact import read_sidecar, sidecar_path

    if not sidecar_path(path).is_file():
        return graph_inputs(path)
    meta = read_sidecar(path)
    batch, L = int(meta["batch"]), int(meta["max_len"])
    pop = [int(i) for i in meta.get("popular") or []] or [1]
    ids = np.zeros((batch, L), np.int64)
    n = max(1, L // 2)
    ids[:, -n:] = np.resize(np.asarray(pop, np.int64), n)
    return [ids]


def graph_inputs(path: str | Path) -> list[np.ndarray]:
    """Inputs built from the artifact's own signature: integer inputs are left-padded, half-full id
    histories (ids 1..GRAPH_IDS), floating inputs are seeded normal noise."""
    from easrec.devices.runners import load_runner

    runner = load_runner(path, threads=1, device="cpu")
    specs = runner.input_specs
    if not specs:
        raise EasrecError(f"{path}: no sidecar ({Path(path).name}.json) and the runtime does not say the graph's input shapes")
    rng = np.random.default_rng(0)
    out = []
    for i, (dtype, shape) in enumerate(specs):
        if shape is None or not all(isinstance(s, int) and s > 0 for s in shape):
            raise EasrecError(f"{path}: input {i} has no fixed shape ({shape}); export with static shapes or write a sidecar")
        dtype = np.dtype(dtype)
        if dtype.kind in "iu":
            arr = np.zeros(shape, dtype)
            if len(shape) >= 1:
                n = max(1, shape[-1] // 2)
                arr[..., -n:] = (np.arange(n) % GRAPH_IDS + 1).astype(dtype)
        elif dtype.kind == "b":
            arr = np.ones(shape, dtype)
        else:
            arr = rng.standard_normal(shape).astype(dtype)
        out.append(arr)
    log.info("%s: no sidecar; inputs from the graph: %s", Path(path).name,
             ", ".join(f"{a.dtype}{list(a.shape)}" for a in out))
    return out


def _rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def bench_artifact(path: str | Path, device, *, runs: int = 100, threads: int = 1, warmup: int = 10) -> dict[str, Any]:
    """Median / p10 / p90 latency, load time, first run, peak memory and file size of one artifact on `device`."""
    from easrec.devices import get_device
    from easrec.devices.runners import runtime_for
    from easrec.export.artifact import read_sidecar, sidecar_path

    if runs < 1:
        raise EasrecError(f"--runs must be >= 1, got {runs}")
    if not Path(path).is_file():
        raise EasrecError(f"{path}: artifact not found")
    if isinstance(device, str):
        device = get_device(device)
    has_sidecar = sidecar_path(path).is_file()
    meta = read_sidecar(path) if has_sidecar else {}
    inputs = artifact_inputs(path)
    rss_before = _rss_mb()
    stats = device.measure(Path(path), inputs, threads=threads, warmup=warmup, min_runs=runs, max_runs=runs, max_seconds=600.0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    first = inputs[0]
    return {
        "artifact": str(path), "device": device.name, "threads": threads, "runtime": meta.get("runtime") or runtime_for(path),
        "sidecar": has_sidecar, "inputs": [{"dtype": str(a.dtype), "shape": list(a.shape)} for a in inputs],
        "batch": int(meta["batch"]) if meta else int(first.shape[0]) if first.ndim else 1,
        "max_len": int(meta["max_len"]) if meta else int(first.shape[-1]) if first.ndim else 1,
        "runs": stats.runs, "median_ms": stats.median_ms,
        "p10_ms": stats.p10_ms, "p90_ms": stats.p90_ms, "first_ms": stats.first_ms, "load_ms": stats.load_ms,
        "peak_rss_mb": peak, "rss_increase_mb": _rss_mb() - rss_before, "size_bytes": os.path.getsize(path),
    }
