"""Latency of an exported artifact on a device (what `easrec bench` prints)."""

from __future__ import annotations

import os
import resource
from pathlib import Path
from typing import Any

import numpy as np

from easrec.errors import EasrecError


def artifact_inputs(path: str | Path) -> list[np.ndarray]:
    """A realistic input from the artifact's sidecar: a half-full, left-padded history of popular items."""
    from easrec.export.artifact import read_sidecar

    meta = read_sidecar(path)
    batch, L = int(meta["batch"]), int(meta["max_len"])
    pop = [int(i) for i in meta.get("popular") or []] or [1]
    ids = np.zeros((batch, L), np.int64)
    n = max(1, L // 2)
    ids[:, -n:] = np.resize(np.asarray(pop, np.int64), n)
    return [ids]


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
    from easrec.export.artifact import read_sidecar

    if runs < 1:
        raise EasrecError(f"--runs must be >= 1, got {runs}")
    if isinstance(device, str):
        device = get_device(device)
    meta = read_sidecar(path)
    inputs = artifact_inputs(path)
    rss_before = _rss_mb()
    stats = device.measure(Path(path), inputs, threads=threads, warmup=warmup, min_runs=runs, max_runs=runs, max_seconds=600.0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "artifact": str(path), "device": device.name, "threads": threads, "runtime": meta.get("runtime"),
        "batch": int(meta["batch"]), "max_len": int(meta["max_len"]), "runs": stats.runs, "median_ms": stats.median_ms,
        "p10_ms": stats.p10_ms, "p90_ms": stats.p90_ms, "first_ms": stats.first_ms, "load_ms": stats.load_ms,
        "peak_rss_mb": peak, "rss_increase_mb": _rss_mb() - rss_before, "size_bytes": os.path.getsize(path),
    }
