"""The measurement protocol the latency table and its validation share.

- Every measured thing is a FILE lowered with the runtime that ships (`easrec.export.lowering.lower`)
  and run by the runtime's own loader. Lowered files are kept in a content-addressed cache
  (`easrec.export.lowering.lowering_cache_dir`), so a graph is lowered once per machine, not once per
  build: a resumed or repeated build only measures.
- Lowering is slow (seconds per graph for ExecuTorch) and measuring wants a quiet machine, so the two
  never overlap: graphs are lowered first, in spawned worker processes shared by every `Lowerer` of
  the Python process, then measured while the workers are idle.
- Measuring (`measure_graphs`): a group of graphs is loaded side by side; after warm-up they are timed
  in `rounds` interleaved rounds, in a new random order each round (`devices.timing.interleaved_rounds`).
  In each round a graph runs a few times back to back and keeps its fastest run; a canary (a fixed
  small MLP) is timed right before every graph, and the median of those is the round's canary
  (`round_canary`). A graph's value is the median over rounds of its per-round minimum: a burst of
  load lands on every graph of a round a little instead of on one graph a lot, and the minimum of a
  few back-to-back runs drops the runs another process interrupted; each round is divided by the
  canary of the same round and multiplied by a reference canary time (`canary_ref_ms`, the table's
  first one), because a shared machine also runs slower for minutes at a time (frequency, memory
  bandwidth, a neighbour), which no per-run statistic can see and which the canary, a small whole
  SASRec graph (`canary_module`), feels as the graphs do. The raw value is stored too.
- Local devices (`cpu`) hold the loaded programs in this process; other devices (adb, ssh, cuda) get
  the same rounds through `Device.measure` with a few runs per call.
- The machine load (`os.getloadavg`) is sampled during every phase (`LoadMonitor`) and stored with the
  results: numbers from a loaded machine are marked as such.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import multiprocessing
import os
import shutil
import tempfile
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn as nn

from easrec.devices import Device, LatencyStats
from easrec.export.graph import TopKGraph
from easrec.devices.timing import RoundTimes, interleaved_rounds, min_of_runs, summarize_rounds

log = logging.getLogger(__name__)


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


class Canary(nn.Module):
    """A fixed small MLP over [1, 64, 64] (seeded weights): the drift reference of the per-component method."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(1234)
        self.w1 = nn.Parameter(torch.randn(256, 64, generator=g) * 0.1)
        self.w2 = nn.Parameter(torch.randn(64, 256, generator=g) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(torch.relu(torch.nn.functional.linear(x, self.w1)), self.w2)

    @staticmethod
    def inputs() -> tuple[torch.Tensor]:
        return (torch.randn(1, 64, 64, generator=torch.Generator().manual_seed(7)),)


def canary_module() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """The canary: the shipped graph of a small fixed SASRec (L 20, d 16, one 1-head block, 1000 items).

    A whole program runs the same kinds of kernels as the graphs it is timed beside (XNNPACK
    delegates, portable kernels, the runtime's call path); a two-linear MLP only saw XNNPACK's GEMM
    and drifted by 13 % while the graphs did not.
    """
    from easrec.profiling.components import program_module
    from easrec.space import Arch, LayerArch

    module, example = program_module(Arch(20, 16, (LayerArch(1, 32),), "softmax", False, 16), 1000, seed=1234)
    return CanaryGraph(module.model, k=module.k).eval(), example


class CanaryGraph(TopKGraph):
    """The canary's graph (a `TopKGraph`, named so that it is told apart from the graphs measured)."""


def drift(start_ms: float, end_ms: float) -> float:
    """Relative change of the canary between the start and the end of a run."""
    return (end_ms - start_ms) / start_ms if start_ms > 0 else 0.0


# ---------------------------------------------------------------- machine load

def load_average() -> float | None:
    """1-minute load average of this machine (None where the OS has none)."""
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return None


class LoadMonitor:
    """Samples of the 1-minute load average taken during a phase; `summary()` for the record."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.sample()

    def sample(self) -> None:
        """Record the load now."""
        v = load_average()
        if v is not None:
            self.samples.append(v)

    def summary(self) -> dict[str, Any]:
        """Start, end, min, mean and max of the samples, and the core count they compare with."""
        self.sample()
        s = self.samples
        if not s:
            return {"available": False}
        return {"start": s[0], "end": s[-1], "min": min(s), "mean": float(np.mean(s)), "max": max(s),
                "samples": len(s), "cores": os.cpu_count()}


# ---------------------------------------------------------------- lowering in worker processes

def _worker_init() -> None:
    """Worker start-up: one thread (the workers run side by side), runtimes imported once."""
    torch.set_num_threads(1)
    import easrec.export.lowering  # noqa: F401


def _lower_job(job: tuple) -> tuple[str, str, list[np.ndarray], bool, float]:
    """Worker: build the module a job names, lower it (through the cache), return (key, path, inputs, hit, seconds)."""
    kind, key, payload, runtime, dtype, path, cache, content_key = job
    torch.set_num_threads(1)
    from easrec.export.lowering import lower_cached, numpy_inputs

    t0 = time.perf_counter()
    module, example = build_module(kind, payload)
    _, hit = lower_cached(module, example, path, runtime, dtype, cache=cache, key=content_key)
    return key, path, numpy_inputs(example), hit, time.perf_counter() - t0


_POOLS: dict[int, ProcessPoolExecutor] = {}


def shared_pool(workers: int) -> ProcessPoolExecutor:
    """The process pool of `workers` spawned lowering workers, created on first use and kept."""
    pool = _POOLS.get(workers)
    if pool is None:
        pool = ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init
        )
        _POOLS[workers] = pool
    return pool


def shutdown_pools() -> None:
    """Stop the shared lowering workers (also run at exit)."""
    while _POOLS:
        _, pool = _POOLS.popitem()
        pool.shutdown(wait=True, cancel_futures=True)


atexit.register(shutdown_pools)


def build_module(kind: str, payload: Any) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """The module for a job: a whole program of the LUT design, a LUT component, a validation subnet, or the canary."""
    if kind == "program":
        from easrec.profiling.components import Overhead, padded_ids, program_module
        from easrec.space import Arch

        arch_dict, n_items, seed = payload
        if arch_dict is None:
            return Overhead().eval(), (padded_ids(50, n_items, seed=seed),)
        return program_module(Arch.from_dict(arch_dict), n_items, seed)
    if kind == "component":
        from easrec.profiling.components import component_module

        component, n_items, head_size = payload
        return component_module(component, n_items, head_size)
    if kind == "subnet":
        from easrec.profiling.validate import subnet_module

        return subnet_module(*payload)
    if kind == "canary":
        return canary_module()
    raise ValueError(f"unknown job kind {kind!r}")


class Lowerer:
    """Lowers jobs to files, through the content-addressed cache, in `workers` spawned processes (0: here).

    The cache is looked up in this process first (building a module and hashing it takes milliseconds),
    so a build whose graphs are all cached starts no worker. `seconds`, `hits` and `lowered` add up
    what every `lower_many` call did.
    """

    def __init__(self, runtime: str, dtype: str, workers: int | None = None, directory: str | Path | None = None,
                 cache: bool | str | Path | None = True):
        self.runtime, self.dtype = runtime, dtype
        if workers is None:
            # torch export is cheap; ExecuTorch / ONNX lowering is seconds per graph: use every core.
            workers = 0 if runtime == "torch" else max(1, min(4, os.cpu_count() or 1))
        self.workers = workers
        self.cache = cache
        self._own_dir = directory is None
        self.directory = Path(tempfile.mkdtemp(prefix="easrec-lut-")) if directory is None else Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.seconds = 0.0
        self.hits = 0
        self.lowered = 0

    def path_for(self, key: str) -> str:
        from easrec.export.lowering import suffix_for

        safe = "".join(c if c.isalnum() or c in "-_.=" else "_" for c in key)
        return str(self.directory / (safe + suffix_for(self.runtime)))

    def lower_many(
        self,
        jobs: Sequence[tuple[str, str, Any]],
        progress: Callable[[int, int], None] | None = None,
    ) -> list[tuple[str, str, list[np.ndarray]]]:
        """Lower (kind, key, payload) jobs; returns (key, path, inputs) in job order."""
        from easrec.export.lowering import _cache_folder, cached_path, content_hash, numpy_inputs

        t0 = time.perf_counter()
        results: dict[int, tuple[str, str, list[np.ndarray]]] = {}
        misses: list[tuple] = []
        for i, (kind, key, payload) in enumerate(jobs):
            path = self.path_for(key)
            content_key = None
            if _cache_folder(self.cache) is not None:
                module, example = build_module(kind, payload)
                content_key = content_hash(module, example, self.runtime, self.dtype)
                hit = cached_path(content_key, self.runtime, self.cache)
                if hit is not None:
                    shutil.copyfile(hit, path)
                    results[i] = (key, path, numpy_inputs(example))
                    self.hits += 1
                    continue
            misses.append((i, (kind, key, payload, self.runtime, self.dtype, path, self.cache, content_key)))
        done = len(results)
        if progress:
            progress(done, len(jobs))
        try:
            if self.workers <= 0 or len(misses) <= 1:
                for i, job in misses:
                    key, path, inputs, _, _ = _lower_job(job)
                    results[i] = (key, path, inputs)
                    self.lowered += 1
                    done += 1
                    if progress:
                        progress(done, len(jobs))
            else:
                pool = shared_pool(self.workers)
                futures: list[tuple[int, Future]] = [(i, pool.submit(_lower_job, job)) for i, job in misses]
                try:
                    for i, f in futures:
                        key, path, inputs, _, _ = f.result()
                        results[i] = (key, path, inputs)
                        self.lowered += 1
                        done += 1
                        if progress:
                            progress(done, len(jobs))
                except BrokenProcessPool:
                    # A worker died (killed, out of memory): drop the pool so the next call starts a fresh one.
                    if _POOLS.get(self.workers) is pool:
                        del _POOLS[self.workers]
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
                except BaseException:
                    for _, f in futures:
                        f.cancel()
                    raise
        finally:
            self.seconds += time.perf_counter() - t0
        return [results[i] for i in range(len(jobs))]

    def close(self) -> None:
        """Remove this lowerer's files (the shared workers and the cache stay)."""
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> "Lowerer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def lower_canary(lowerer: Lowerer) -> tuple[str, list[np.ndarray]]:
    """The canary's file and inputs (lowered once per lowerer, cached across runs)."""
    path = Path(lowerer.path_for("canary"))
    if not path.is_file():
        _, p, inputs = lowerer.lower_many([("canary", "canary", None)])[0]
        return p, inputs
    from easrec.export.lowering import numpy_inputs

    return str(path), numpy_inputs(canary_module()[1])


def measure_canary(device: Device, lowerer: Lowerer, threads: int, settings: Settings) -> float:
    """Median of the canary timed alone (lowered once per lowerer)."""
    path, inputs = lower_canary(lowerer)
    return measure(device, Path(path), inputs, threads, settings).median_ms


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
    from easrec.devices.runners import load_runner

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
