"""Latency statistics and the timing loop shared by every device backend.

The protocol (see FACTS.md, "Latency measurement"): warm-up runs that are not kept, then timed runs
until the median is stable, with load time and the first run reported apart from the steady state.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class LatencyStats:
    """Steady-state latency of one artifact on one device, in milliseconds."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    mean_ms: float
    std_ms: float
    runs: int
    load_ms: float | None = None
    first_ms: float | None = None
    samples_ms: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict (every field, samples included)."""
        d = asdict(self)
        d["samples_ms"] = [float(x) for x in self.samples_ms]
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LatencyStats":
        """Rebuild from `to_dict()` output; unknown keys are ignored, missing required ones raise."""
        from easrec.errors import EasrecError

        required = ("median_ms", "p10_ms", "p90_ms", "mean_ms", "std_ms", "runs")
        missing = [k for k in required if k not in data]
        if missing:
            raise EasrecError(f"latency stats: missing field(s) {', '.join(missing)}")
        return cls(
            median_ms=float(data["median_ms"]),
            p10_ms=float(data["p10_ms"]),
            p90_ms=float(data["p90_ms"]),
            mean_ms=float(data["mean_ms"]),
            std_ms=float(data["std_ms"]),
            runs=int(data["runs"]),
            load_ms=None if data.get("load_ms") is None else float(data["load_ms"]),
            first_ms=None if data.get("first_ms") is None else float(data["first_ms"]),
            samples_ms=[float(x) for x in data.get("samples_ms") or []],
        )


def summarize(
    samples_ms: list[float],
    runs: int | None = None,
    load_ms: float | None = None,
    first_ms: float | None = None,
) -> LatencyStats:
    """Median, p10/p90 (linear interpolation), mean and std of steady-state samples."""
    from easrec.errors import EasrecError

    if len(samples_ms) == 0:
        raise EasrecError("latency stats: no timed samples to summarize")
    arr = np.asarray(samples_ms, dtype=np.float64)
    p10, med, p90 = np.percentile(arr, [10, 50, 90])
    return LatencyStats(
        median_ms=float(med),
        p10_ms=float(p10),
        p90_ms=float(p90),
        mean_ms=float(arr.mean()),
        std_ms=float(arr.std(ddof=1)) if arr.size > 1 else 0.0,
        runs=int(runs if runs is not None else arr.size),
        load_ms=load_ms,
        first_ms=first_ms,
        samples_ms=[float(x) for x in arr],
    )


def is_stable(samples_ms: list[float], rel_tol: float) -> bool:
    """True when the median of the last half is within `rel_tol` of the median of all samples."""
    if len(samples_ms) < 2:
        return False
    whole = float(np.median(samples_ms))
    half = float(np.median(samples_ms[len(samples_ms) // 2 :]))
    if whole == 0.0:
        return half == 0.0
    return abs(half - whole) / abs(whole) < rel_tol


def time_callable(
    fn: Callable[[], Any],
    *,
    warmup: int = 10,
    min_runs: int = 30,
    max_runs: int = 200,
    rel_tol: float = 0.02,
    max_seconds: float = 10.0,
    clock: Callable[[], float] = time.perf_counter,
) -> LatencyStats:
    """Time `fn()`: `warmup` untimed-for-stats runs (the first one is reported as `first_ms`), then
    timed runs until the median is stable after `min_runs`, or `max_runs` / `max_seconds` is hit.

    `clock` returns seconds. `max_seconds` bounds the timed phase (at least one timed run is made).
    """
    if max_runs < 1:
        raise ValueError("max_runs must be >= 1")
    min_runs = max(1, min(min_runs, max_runs))
    first_ms: float | None = None
    for i in range(max(0, warmup)):
        t0 = clock()
        fn()
        t1 = clock()
        if i == 0:
            first_ms = (t1 - t0) * 1e3
    samples: list[float] = []
    start = clock()
    reason = "max_runs"
    while len(samples) < max_runs:
        t0 = clock()
        fn()
        t1 = clock()
        samples.append((t1 - t0) * 1e3)
        if len(samples) >= min_runs and is_stable(samples, rel_tol):
            reason = "stable"
            break
        if t1 - start >= max_seconds:
            reason = "max_seconds"
            break
    if first_ms is None:  # no warm-up: the first timed run is still the first run
        first_ms = samples[0]
    log.debug("time_callable: %d runs, stopped on %s", len(samples), reason)
    stats = summarize(samples, len(samples), None, first_ms)
    if not math.isfinite(stats.median_ms):
        from easrec.errors import EasrecError

        raise EasrecError("latency stats: non-finite timings (is the clock monotonic?)")
    return stats
