"""Lowering graphs to files for measurement: spawned worker processes and the content-addressed cache.

Lowering is slow (seconds per graph for ExecuTorch) and measuring wants a quiet machine, so the two
never overlap: graphs are lowered first, in spawned worker processes shared by every `Lowerer` of
the Python process, then measured while the workers are idle. Lowered files are kept in a
content-addressed cache (`easrec.export.lowering.lowering_cache_dir`), so a graph is lowered once per
machine, not once per build.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import shutil
import tempfile
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn as nn

from easrec.export.lowering import _cache_folder, cached_path, content_hash, lower, numpy_inputs, suffix_for
from easrec.profiling.canary import canary_key, canary_module
from easrec.profiling.components import Overhead, component_module, padded_ids, program_module
from easrec.profiling.subnets import subnet_module
from easrec.space import Arch


def _worker_init() -> None:
    """Worker start-up: one thread (the workers run side by side)."""
    torch.set_num_threads(1)


def _lower_job(job: tuple) -> tuple[str, str, list[np.ndarray], float]:
    """Worker: build the module a job names, lower it (through the cache), return (key, path, inputs, seconds)."""
    kind, key, payload, runtime, dtype, path, cache, content_key = job
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    module, example = build_module(kind, payload)
    lower(module, example, path, runtime, dtype, cache=cache, key=content_key)
    return key, path, numpy_inputs(example), time.perf_counter() - t0


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
        arch_dict, n_items, seed = payload
        if arch_dict is None:
            return Overhead().eval(), (padded_ids(50, n_items, seed=seed),)
        return program_module(Arch.from_dict(arch_dict), n_items, seed)
    if kind == "component":
        component, n_items, head_size = payload
        return component_module(component, n_items, head_size)
    if kind == "subnet":
        return subnet_module(*payload)
    if kind == "canary":
        return canary_module(payload)
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
        """The file a job key is lowered to in this lowerer's folder."""
        safe = "".join(c if c.isalnum() or c in "-_.=" else "_" for c in key)
        return str(self.directory / (safe + suffix_for(self.runtime)))

    def lower_many(
        self,
        jobs: Sequence[tuple[str, str, Any]],
        progress: Callable[[int, int], None] | None = None,
    ) -> list[tuple[str, str, list[np.ndarray]]]:
        """Lower (kind, key, payload) jobs; returns (key, path, inputs) in job order."""
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
                    key, path, inputs, _ = _lower_job(job)
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
                        key, path, inputs, _ = f.result()
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


def lower_canary(lowerer: Lowerer, spec: dict | None = None) -> tuple[str, list[np.ndarray]]:
    """The canary's file and inputs (lowered once per lowerer, cached across runs); `spec`: the table's
    `canary_spec` (None: the small canary of older tables)."""
    key = canary_key(spec)
    path = Path(lowerer.path_for(key))
    if not path.is_file():
        _, p, inputs = lowerer.lower_many([("canary", key, spec)])[0]
        return p, inputs
    return str(path), numpy_inputs(canary_module(spec)[1])
