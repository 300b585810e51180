"""The measurement protocol the latency table and its validation share.

- Every measured thing is a FILE lowered with the runtime that ships (`easrec.export.lowering.lower`)
  and run by the runtime's own loader; lowering (in worker processes, through a content-addressed
  cache) never overlaps measuring: `easrec.profiling.lowerer`.
- Measuring (`measure_graphs`): a group of graphs is loaded side by side; after warm-up they are timed
  in `rounds` interleaved rounds, in a new random order each round (`devices.timing.interleaved_rounds`).
  In each round a graph runs a few times back to back and keeps its fastest run; a canary (a fixed
  whole SASRec graph, `canary_module`) is timed right before every graph, and the median of those is the round's canary
  (`round_canary`). A graph's value is the median over rounds of its per-round minimum: a burst of
  load lands on every graph of a round a little instead of on one graph a lot, and the minimum of a
  few back-to-back runs drops the runs another process interrupted; each round is divided by the
  canary of the same round and multiplied by a reference canary time (`canary_ref_ms`, the table's
  first one), because a shared machine also runs slower for minutes at a time (frequency, memory
  bandwidth, a neighbour), which no per-run statistic can see and which the canary, a mid-size whole
  SASRec graph of the table's own space (`canary_spec`), feels as the graphs do. The raw value is stored too.
- Local devices (`cpu`) hold the loaded programs in this process; other devices (adb, ssh, cuda) get
  the same rounds through `Device.measure` with a few runs per call.
- The machine load (`os.getloadavg`) is sampled during every phase (`easrec.profiling.machine_load`) and
  stored with the results: numbers from a loaded machine are marked as such.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch

from easrec.devices import Device, LatencyStats, load_runner
from easrec.devices.timing import RoundTimes, interleaved_rounds, min_of_runs, summarize_rounds
from easrec.profiling.canary import CanaryGraph, canary_module, canary_spec, drift
from easrec.profiling.lowerer import Lowerer, lower_canary
from easrec.profiling.machine_load import LoadMonitor, load_average

# Re-exported: the protocol's parts, where callers have always found them.
__all__ = [
    "CanaryGraph", "Clock", "LoadMonitor", "Lowerer", "ProgressFn", "Settings", "canary_median", "canary_module", "canary_spec",
    "chunks", "drift", "load_average", "lower_canary", "measure", "measure_graphs", "round_canary", "session_record",
]


@dataclass
class Settings:
    """How long to time one graph: warm-up runs, then `rounds` interleaved rounds within a run/time budget.

    `min_runs` / `max_runs` / `max_seconds` bound the timed runs of one graph over all rounds (the runs
    per round follow from its warm-up time); a round takes at least `min_round_seconds` (a pause after
    a short one); `canary_runs` is the canary's runs per round; `normalize` divides every round by the
    canary of that round (see the measurements below); `remeasure_passes` bounds the re-measurement of
    entries that break monotonicity.
    """

    warmup: int = 10
    min_runs: int = 30
    max_runs: int = 200
    max_seconds: float = 1.5
    rounds: int = 9
    min_round_seconds: float = 0.5
    canary_runs: int = 3
    # Chosen on data (quick space, ExecuTorch fp32 / int8 / ONNX Runtime, 6 runs each, load 0.7–3, 10 subnets
    # measured in two sessions, every statistic computed from the same rounds): the two sessions' MAPE was
    # 4.5 % on average (worst 11 %) for the canary-normalised median, 12.3 % (worst 45 %) raw, 7.1 % (worst
    # 32 %) for the raw mean of the fastest third of rounds. The host runs up to 1.5–1.8× slower for seconds
    # to minutes even at load < 1, which no per-run statistic sees and the whole-program canary mostly does.
    # (An MLP canary drifted 13 % while the graphs did not.) Every alternative is stored (`alt`).
    normalize: bool = True
    statistic: str = "median"
    remeasure_passes: int = 2

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (stored in the LUT file)."""
        return asdict(self)

    def runs_per_round(self, estimate_ms: float) -> int:
        """Runs per round for a graph that takes about `estimate_ms`: ≥ ⌈min_runs/rounds⌉, ≤ max_runs/rounds."""
        rounds = max(1, self.rounds)
        lo = max(2, math.ceil(self.min_runs / rounds))
        hi = max(lo, self.max_runs // rounds)
        budget_ms = 1e3 * self.max_seconds / rounds
        n = int(budget_ms / max(estimate_ms, 1e-3))
        return int(min(hi, max(lo, n)))


def measure(device: Device, path: Path, inputs: list[np.ndarray], threads: int, settings: Settings) -> LatencyStats:
    """Time one artifact on `device` with the protocol's settings (one call, no rounds)."""
    return device.measure(
        Path(path), list(inputs), threads=threads, warmup=settings.warmup, min_runs=settings.min_runs,
        max_runs=settings.max_runs, max_seconds=settings.max_seconds,
    )


# ---------------------------------------------------------------- interleaved measurement

def _local(device: Device) -> bool:
    """Whether `device` runs artifacts in this process (then graphs are held loaded side by side)."""
    return getattr(device, "kind", None) == "cpu" and hasattr(device, "pinned")


def _fastest(stats: Any) -> float:
    samples = getattr(stats, "samples_ms", None)
    return float(min(samples)) if samples else float(stats.p10_ms)


def measure_graphs(
    device: Device,
    items: Sequence[tuple[str, str, list[np.ndarray]]],
    canary: tuple[str, list[np.ndarray]],
    threads: int,
    settings: Settings,
    *,
    seed: int = 0,
    monitor: LoadMonitor | None = None,
) -> dict[str, RoundTimes]:
    """Time (key, path, inputs) graphs in interleaved rounds with the canary beside each; key → RoundTimes."""
    if not items:
        return {}
    if _local(device):
        return _measure_local(device, items, canary, threads, settings, seed, monitor)
    return _measure_remote(device, items, canary, threads, settings, seed, monitor)


def _measure_local(device, items, canary, threads, settings, seed, monitor) -> dict[str, RoundTimes]:
    torch_threads = torch.get_num_threads()
    pinned = device.pinned() if hasattr(device, "pinned") else contextlib.nullcontext()
    try:
        with device.named_errors(), pinned:
            c_runner = load_runner(Path(canary[0]), threads=threads, device="cpu")
            c_prep = c_runner.prepare(list(canary[1]))
            loaded = []
            for key, path, inputs in items:
                runner = load_runner(Path(path), threads=threads, device="cpu")
                loaded.append((key, runner, runner.prepare(list(inputs))))

            def call(runner, prep):
                return lambda: runner.call(prep)

            c_call = call(c_runner, c_prep)
            for _ in range(max(1, settings.warmup)):
                c_call()
            slots, out = [], {}
            for key, runner, prep in loaded:
                fn = call(runner, prep)
                t0 = time.perf_counter()
                fn()
                first = (time.perf_counter() - t0) * 1e3
                warm = [min_of_runs(fn, 1, untimed=0) for _ in range(max(1, settings.warmup - 1))]
                n = settings.runs_per_round(float(np.median(warm)))
                out[key] = RoundTimes([], [], n, runner.load_ms, first)
                slots.append((lambda f=fn, k=n: min_of_runs(f, k)))
            c_slot = (lambda: min_of_runs(c_call, settings.canary_runs)) if settings.canary_runs > 0 else None
            on_round = (lambda r: monitor.sample()) if monitor is not None else None
            times, can = interleaved_rounds(slots, rounds=settings.rounds, canary=c_slot, seed=seed, on_round=on_round,
                                            min_round_seconds=settings.min_round_seconds)
    finally:
        torch.set_num_threads(torch_threads)
    _store(out, [k for k, _, _ in loaded], times, can)
    return out


def _measure_remote(device, items, canary, threads, settings, seed, monitor) -> dict[str, RoundTimes]:
    # Each call loads the file again on the device: a few runs per call, the fastest kept, in rounds.
    n = max(2, math.ceil(settings.min_runs / max(1, settings.rounds)))
    per_call_s = max(0.05, settings.max_seconds / max(1, settings.rounds))

    def slot(path, inputs, runs):
        def run() -> float:
            return _fastest(device.measure(Path(path), list(inputs), threads=threads, warmup=2, min_runs=runs,
                                           max_runs=runs, max_seconds=per_call_s))
        return run

    out = {key: RoundTimes([], [], n) for key, _, _ in items}
    slots = [slot(path, inputs, n) for _, path, inputs in items]
    c_slot = slot(canary[0], canary[1], max(2, settings.canary_runs)) if settings.canary_runs > 0 else None
    on_round = (lambda r: monitor.sample()) if monitor is not None else None
    times, can = interleaved_rounds(slots, rounds=settings.rounds, canary=c_slot, seed=seed, on_round=on_round,
                                    min_round_seconds=settings.min_round_seconds)
    _store(out, [k for k, _, _ in items], times, can)
    return out


def round_canary(can: list[list[float]]) -> list[float]:
    """The canary of each round: the median of the canary timings taken before every graph of that round.

    One tiny graph timed a few times is noisier than the graphs it is meant to correct; the median over
    a round's slots follows the machine's state from round to round without adding that noise.
    """
    if not can or not can[0]:
        return []
    arr = np.asarray(can, float)  # [slot, round]
    return [float(v) for v in np.median(arr, axis=0)]


def _store(out: dict[str, RoundTimes], keys: list[str], times: list[list[float]], can: list[list[float]]) -> None:
    per_round = round_canary(can)
    for i, (key, t) in enumerate(zip(keys, times)):
        out[key].times_ms, out[key].canary_ms = t, list(per_round)
        out[key].slot_canary_ms = list(can[i]) if can and can[i] else []


def canary_median(results: Iterable[RoundTimes]) -> float | None:
    """Median canary time over every round of `results` (None when no canary was timed)."""
    vals = [c for rt in results for c in rt.canary_ms if c > 0]
    return float(np.median(vals)) if vals else None


def session_record(rt: RoundTimes, canary_ref_ms: float | None, settings: Settings) -> dict[str, Any]:
    """One measurement session of a graph as stored in a LUT file: summary plus the per-round raw times."""
    rec = summarize_rounds(rt, canary_ref_ms, settings.normalize, settings.statistic)
    rec.update(times_ms=[float(x) for x in rt.times_ms], canary_ms=[float(x) for x in rt.canary_ms],
               slot_canary_ms=[float(x) for x in rt.slot_canary_ms],
               runs_per_round=int(rt.runs_per_round), load_ms=rt.load_ms, first_ms=rt.first_ms)
    return rec


def chunks(items: list, size: int) -> Iterable[list]:
    """Consecutive slices of `items` of at most `size`."""
    size = max(1, int(size))
    for i in range(0, len(items), size):
        yield items[i : i + size]


class Clock:
    """Elapsed seconds since construction."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0


ProgressFn = Callable[[int, int, str], None]
