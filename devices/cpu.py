"""`cpu` / `cpu:N`: this machine, with a fixed thread count and optional core pinning."""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from easrec.devices.base import Device, host_fingerprint
from easrec.devices.runners import load_runner
from easrec.devices.timing import LatencyStats, MeasurePolicy, time_callable

log = logging.getLogger(__name__)


class CpuDevice(Device):
    """The local CPU. `threads` is fixed for every runtime; `cores` pins the process while measuring."""

    kind = "cpu"

    def __init__(self, threads: int = 1, cores: list[int] | None = None, rel_tol: float = 0.02) -> None:
        threads = int(threads)
        super().__init__("cpu" if threads == 1 else f"cpu:{threads}")
        if threads < 1:
            raise self.fail("configuring", f"threads must be >= 1, got {threads}")
        self.threads = threads
        self.cores = sorted(set(int(c) for c in cores)) if cores else None
        self.rel_tol = rel_tol
        if self.cores is not None:
            ncpu = os.cpu_count() or 1
            bad = [c for c in self.cores if c < 0 or c >= ncpu]
            if bad:
                raise self.fail("pinning cores", f"core(s) {bad} do not exist (this machine has {ncpu})")

    def info(self) -> dict[str, Any]:
        """Fingerprint of this machine with the thread count and pinned cores."""
        return {"kind": "cpu", "spec": self.name, **host_fingerprint(self.threads), "pinned_cores": self.cores}

    def push(self, artifact: Path) -> str:
        """Nothing to copy: return the artifact's absolute path."""
        artifact = Path(artifact)
        if not artifact.is_file():
            raise self.fail(f"pushing {artifact.name}", f"no such file {artifact}")
        return str(artifact.resolve())

    @contextlib.contextmanager
    def pinned(self) -> Iterator[None]:
        """Pin this process to `cores` (where the OS allows) for the duration of the block."""
        if not self.cores or not hasattr(os, "sched_setaffinity"):
            if self.cores:
                log.warning("%s: core pinning is not supported on this OS; running unpinned", self.name)
            yield
            return
        before = os.sched_getaffinity(0)
        try:
            os.sched_setaffinity(0, self.cores)
        except OSError as exc:
            log.warning("%s: cannot pin to cores %s (%s); running unpinned", self.name, self.cores, exc)
            yield
            return
        try:
            yield
        finally:
            try:
                os.sched_setaffinity(0, before)
            except OSError:
                pass

    def default_threads(self) -> int:
        """The device's own thread count (cpu:N)."""
        return self.threads

    def timed(self, artifact: Path, inputs: list[np.ndarray], threads: int, policy: MeasurePolicy) -> LatencyStats:
        """Load with the artifact's runtime, then time `Runner.call` on prepared inputs."""
        path = Path(self.push(artifact))
        torch_threads = _torch_threads()
        try:
            with self.named_errors(), self.pinned():
                runner = load_runner(path, threads=threads, device="cpu")
                prepared = runner.prepare(inputs)
                stats = time_callable(lambda: runner.call(prepared), rel_tol=self.rel_tol, **asdict(policy))
        finally:
            if torch_threads is not None:
                import torch

                torch.set_num_threads(torch_threads)
        stats.load_ms = runner.load_ms
        log.info("%s: %s median %.3f ms over %d runs (load %.1f ms)", self.name, path.name, stats.median_ms, stats.runs, stats.load_ms)
        return stats


def _torch_threads() -> int | None:
    import sys

    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None
