"""Latency statistics and the timing loop shared by every device backend.

The protocol: warm-up runs that are not kept, then timed runs
until the median is stable, with load time and the first run reported apart from the steady state.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from easrec.errors import EasrecError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MeasurePolicy:
    """When a measurement stops: `warmup` runs not kept, then at least `min_runs` and at most `max_runs`
    timed runs, within `max_seconds` of timing."""

    warmup: int = 10
    min_runs: int = 30
    max_runs: int = 200
    max_seconds: float = 10.0


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
        raise EasrecError("latency stats: non-finite timings (is the clock monotonic?)")
    return stats


# ------------------------------------------------------------------ interleaved rounds

def min_of_runs(fn: Callable[[], Any], runs: int, *, untimed: int = 1, clock: Callable[[], float] = time.perf_counter) -> float:
    """Fastest of `runs` timed calls of `fn` (ms), after `untimed` calls that warm caches back up.

    The minimum of a few back-to-back calls is the statistic least disturbed by another process
    taking the core for part of a call: preemption only ever adds time.
    """
    for _ in range(max(0, untimed)):
        fn()
    best = math.inf
    for _ in range(max(1, runs)):
        t0 = clock()
        fn()
        best = min(best, (clock() - t0) * 1e3)
    return best


@dataclass
class RoundTimes:
    """One graph timed in interleaved rounds: per round, its fastest run and the canary's right beside it."""

    times_ms: list[float]
    canary_ms: list[float]
    runs_per_round: int = 1
    load_ms: float | None = None
    first_ms: float | None = None
    slot_canary_ms: list[float] = field(default_factory=list)  # the canary timed right before this graph

    def ratios(self) -> np.ndarray:
        """Per-round time divided by the canary of the same round (nan where no canary was timed)."""
        t = np.asarray(self.times_ms, float)
        c = np.asarray(self.canary_ms, float) if self.canary_ms else np.full_like(t, np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(c > 0, t / c, np.nan)


def interleaved_rounds(
    slots: Sequence[Callable[[], float]],
    *,
    rounds: int,
    canary: Callable[[], float] | None = None,
    seed: int = 0,
    on_round: Callable[[int], None] | None = None,
    min_round_seconds: float = 0.0,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[list[list[float]], list[list[float]]]:
    """Time every slot once per round, in a fresh random order each round, the canary just before each.

    A slot (and the canary) is a callable that runs its graph a few times and returns the fastest run
    in ms (`min_of_runs`). Interleaving spreads a burst of load over all graphs instead of landing on
    one; the canary beside each slot measures how fast the machine is at that moment. A round shorter
    than `min_round_seconds` is followed by a pause, so that the rounds of a few small graphs still
    span seconds and one slow second cannot take most of them. Returns (times[slot][round],
    canary[slot][round]); canary lists are empty without a canary.
    """
    rng = np.random.default_rng(seed)
    n = len(slots)
    times: list[list[float]] = [[] for _ in range(n)]
    can: list[list[float]] = [[] for _ in range(n)]
    for r in range(max(1, rounds)):
        t0 = clock()
        for i in rng.permutation(n):
            if canary is not None:
                can[i].append(float(canary()))
            times[i].append(float(slots[i]()))
        if on_round is not None:
            on_round(r)
        rest = min_round_seconds - (clock() - t0)
        if rest > 0 and r < rounds - 1:
            sleep(rest)
    return times, can


def robust_sigma(values: Sequence[float]) -> float:
    """1.4826 × median absolute deviation (the standard deviation for normal data, blind to outliers)."""
    v = np.asarray([x for x in values if math.isfinite(x)], float)
    if v.size < 2:
        return 0.0
    return float(1.4826 * np.median(np.abs(v - np.median(v))))


STATISTICS = ("median", "fast")


def fast_state(values: Sequence[float], share: float = 1 / 3) -> float:
    """Mean of the fastest `share` of the values (at least one): the machine's speed when nothing
    interferes. A shared machine flips between a fast and a slow state for seconds at a time; the
    slow rounds only ever add time, so the fastest rounds are what repeats from session to session."""
    v = np.sort(np.asarray([x for x in values if math.isfinite(x)], float))
    if v.size == 0:
        return float("nan")
    k = max(1, int(math.ceil(share * v.size)))
    return float(v[:k].mean())


def summarize_rounds(rt: RoundTimes, canary_ref_ms: float | None, normalize: bool = True,
                     statistic: str = "median") -> dict[str, Any]:
    """A graph's value over rounds (of per-round minima): the `statistic` ("median", or "fast": the
    mean of the fastest third of the rounds), canary-normalised to `canary_ref_ms` when asked.

    `sigma_ms` is the standard error of a median over the rounds (1.2533 · robust σ / √rounds);
    `p10_ms` / `p90_ms` are over rounds. `alt` holds every statistic, raw and normalised.
    """
    if statistic not in STATISTICS:
        raise ValueError(f"statistic must be one of {STATISTICS}, got {statistic!r}")
    raw = np.asarray(rt.times_ms, float)
    if raw.size == 0:
        raise EasrecError("latency stats: no timed rounds to summarize")
    ratios = rt.ratios()
    scaled = None
    if canary_ref_ms and canary_ref_ms > 0 and ratios.size == raw.size and np.isfinite(ratios).all():
        scaled = ratios * canary_ref_ms
    vals = scaled if normalize and scaled is not None else raw
    p10, med, p90 = np.percentile(vals, [10, 50, 90])
    value = float(med) if statistic == "median" else fast_state(vals)
    sigma = 1.2533 * robust_sigma(vals) / math.sqrt(len(vals))
    alt = {"raw_median": float(np.median(raw)), "raw_fast": fast_state(raw)}
    if scaled is not None:
        alt.update(normalized_median=float(np.median(scaled)), normalized_fast=fast_state(scaled))
    slot = np.asarray(rt.slot_canary_ms, float)
    if canary_ref_ms and slot.size == raw.size and (slot > 0).all():
        alt["slot_normalized_median"] = float(np.median(raw / slot * canary_ref_ms))
    return {
        "median_ms": value, "p10_ms": float(min(p10, value)), "p90_ms": float(max(p90, value)), "sigma_ms": float(sigma),
        "raw_median_ms": alt["raw_median"], "normalized_median_ms": alt.get("normalized_median"), "alt": alt,
        "rounds": int(raw.size), "runs": int(raw.size * max(1, rt.runs_per_round)), "normalized": vals is scaled,
        "statistic": statistic,
    }
