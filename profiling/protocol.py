"""The measurement protocol the latency table and its validation share.

- Every measured thing is a FILE lowered with the runtime that ships (`easrec.export.lowering.lower`)
  and timed by `Device.measure` (load, first run and steady state separated; warm-up; timed runs
  until the median is stable, or a cap of runs / seconds; a fixed thread count).
- Lowering is slow (seconds per graph for ExecuTorch) and measuring wants a quiet machine, so the two
  never overlap: a chunk of graphs is lowered in parallel worker processes (`Lowerer`), then the
  chunk is measured one at a time while the workers are idle. The worker processes are spawned once
  per Python process and shared by every `Lowerer` (a LUT build and its validation), so the seconds
  each one spends importing torch and ExecuTorch and warming up the first lowering are paid once.
- A canary (a fixed small MLP) is measured at the start and the end of every run; the relative drift
  between the two says how much the machine changed underneath the measurements.
"""

from __future__ import annotations

import atexit
import logging
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

log = logging.getLogger(__name__)


@dataclass
class Settings:
    """How long to time one graph: warm-up runs, then runs until the median is stable or a cap."""

    warmup: int = 10
    min_runs: int = 30
    max_runs: int = 200
    max_seconds: float = 1.5

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure(device: Device, path: Path, inputs: list[np.ndarray], threads: int, settings: Settings) -> LatencyStats:
    """Time one artifact on `device` with the protocol's settings."""
    return device.measure(
        Path(path), list(inputs), threads=threads, warmup=settings.warmup, min_runs=settings.min_runs,
        max_runs=settings.max_runs, max_seconds=settings.max_seconds,
    )


class Canary(nn.Module):
    """A fixed small MLP over [1, 64, 64] (seeded weights): the drift reference."""

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


def drift(start_ms: float, end_ms: float) -> float:
    """Relative change of the canary between the start and the end of a run."""
    return (end_ms - start_ms) / start_ms if start_ms > 0 else 0.0


# ---------------------------------------------------------------- lowering in worker processes

def _worker_init() -> None:
    """Worker start-up: one thread (the workers run side by side), runtimes imported once."""
    torch.set_num_threads(1)
    import easrec.export.lowering  # noqa: F401


def _lower_job(job: tuple) -> tuple[str, str, list[np.ndarray]]:
    """Worker: build the module a job names, lower it, return (key, path, numpy example inputs)."""
    kind, key, payload, runtime, dtype, path = job
    torch.set_num_threads(1)
    from easrec.export.lowering import lower, numpy_inputs

    module, example = build_module(kind, payload)
    lower(module, example, path, runtime, dtype)
    return key, path, numpy_inputs(example)


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
    """The module for a job: a LUT component, a whole subnet graph, or the canary."""
    if kind == "component":
        from easrec.profiling.components import component_module

        component, n_items, head_size = payload
        return component_module(component, n_items, head_size)
    if kind == "subnet":
        from easrec.profiling.validate import subnet_module

        return subnet_module(*payload)
    if kind == "canary":
        return Canary().eval(), Canary.inputs()
    raise ValueError(f"unknown job kind {kind!r}")


class Lowerer:
    """Lowers jobs to files, in `workers` spawned processes (0: in this process)."""

    def __init__(self, runtime: str, dtype: str, workers: int | None = None, directory: str | Path | None = None):
        self.runtime, self.dtype = runtime, dtype
        if workers is None:
            # torch export is cheap; ExecuTorch / ONNX lowering is seconds per graph: use every core.
            workers = 0 if runtime == "torch" else max(1, min(4, os.cpu_count() or 1))
        self.workers = workers
        self._own_dir = directory is None
        self.directory = Path(tempfile.mkdtemp(prefix="easrec-lut-")) if directory is None else Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def path_for(self, key: str) -> str:
        from easrec.export.lowering import suffix_for

        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in key)
        return str(self.directory / (safe + suffix_for(self.runtime)))

    def lower_many(self, jobs: Sequence[tuple[str, str, Any]]) -> list[tuple[str, str, list[np.ndarray]]]:
        """Lower (kind, key, payload) jobs; returns (key, path, inputs) in job order."""
        full = [(kind, key, payload, self.runtime, self.dtype, self.path_for(key)) for kind, key, payload in jobs]
        if self.workers <= 0 or len(full) == 1:
            return [_lower_job(job) for job in full]
        pool = shared_pool(self.workers)
        futures: list[Future] = [pool.submit(_lower_job, job) for job in full]
        try:
            return [f.result() for f in futures]
        except BrokenProcessPool:
            # A worker died (killed, out of memory): drop the pool so the next call starts a fresh one.
            if _POOLS.get(self.workers) is pool:
                del _POOLS[self.workers]
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        except BaseException:
            for f in futures:
                f.cancel()
            raise

    def close(self) -> None:
        """Remove this lowerer's files (the shared workers stay for the next `Lowerer`)."""
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> "Lowerer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def measure_canary(device: Device, lowerer: Lowerer, threads: int, settings: Settings) -> float:
    """Median of the canary (lowered once per run, measured each time it is called)."""
    path = Path(lowerer.path_for("canary"))
    if not path.is_file():
        _, p, inputs = lowerer.lower_many([("canary", "canary", None)])[0]
    inputs = [t.numpy() for t in Canary.inputs()]
    return measure(device, path, inputs, threads, settings).median_ms


def chunks(items: list, size: int) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class Clock:
    """Elapsed seconds since construction."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0


ProgressFn = Callable[[int, int, str], None]
