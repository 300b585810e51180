"""`cuda` / `cuda:N`: a GPU through torch (CUDA events) or ONNX Runtime's CUDA provider.

Needs only torch (any recent version) and, for `.onnx`, onnxruntime-gpu; never ExecuTorch.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from easrec.devices.base import Device, host_fingerprint
from easrec.devices.runners import load_runner
from easrec.devices.timing import LatencyStats, MeasurePolicy, is_stable, summarize, time_callable

log = logging.getLogger(__name__)


class CudaDevice(Device):
    """One CUDA GPU; `.pt2` timed with CUDA events, `.onnx` with the wall clock after synchronize."""

    kind = "cuda"

    def __init__(self, index: int = 0, rel_tol: float = 0.02) -> None:
        super().__init__(f"cuda:{int(index)}")
        self.index = int(index)
        self.rel_tol = rel_tol

    def _torch(self) -> Any:
        try:
            import torch
        except ImportError as exc:
            raise self.fail("initialising", "torch is not installed") from exc
        if not torch.cuda.is_available():
            raise self.fail("initialising", f"torch {torch.__version__} sees no CUDA GPU")
        if self.index >= torch.cuda.device_count():
            raise self.fail("initialising", f"no GPU {self.index} (torch sees {torch.cuda.device_count()})")
        return torch

    def info(self) -> dict[str, Any]:
        """Host fingerprint plus GPU name, memory, driver, CUDA and torch versions."""
        torch = self._torch()
        props = torch.cuda.get_device_properties(self.index)
        info = {"kind": "cuda", "spec": self.name, **host_fingerprint(None)}
        info.update({
            "gpu": props.name,
            "gpu_memory_gb": round(props.total_memory / 2**30, 2),
            "compute_capability": f"{props.major}.{props.minor}",
            "cuda": torch.version.cuda,
            "torch": torch.__version__,
            "driver": _driver_version(self.index),
        })
        return info

    def push(self, artifact: Path) -> str:
        """Nothing to copy: return the artifact's absolute path."""
        artifact = Path(artifact)
        if not artifact.is_file():
            raise self.fail(f"pushing {artifact.name}", f"no such file {artifact}")
        return str(artifact.resolve())

    def energy_supported(self) -> bool:
        """NVML energy counters exist on most NVIDIA GPUs (Volta and newer)."""
        return _driver_version(self.index) is not None

    def timed(self, artifact: Path, inputs: list[np.ndarray], threads: int, policy: MeasurePolicy) -> LatencyStats:
        """`.pt2` with CUDA events around each run, `.onnx` with the CUDA provider; `.pte` is refused."""
        path = Path(self.push(artifact))
        suffix = path.suffix.lower()
        if suffix == ".pte":
            raise self.fail(f"measuring {path.name}", ".pte (ExecuTorch) artifacts run on CPU devices; export .pt2 or .onnx for cuda")
        if suffix not in (".pt2", ".onnx"):
            raise self.fail(f"measuring {path.name}", f"unknown artifact type {suffix!r} (expected .pt2 or .onnx)")
        if suffix == ".onnx":
            # ORT returns host arrays, so run() is complete when it returns; synchronize anyway when
            # torch is there (onnxruntime-gpu alone is enough to measure an .onnx).
            try:
                torch = self._torch()
            except Exception:
                torch = None
            with self.named_errors():
                runner = load_runner(path, threads=threads, device=self.name)
                prepared = runner.prepare(list(inputs))

            def step() -> None:
                runner.call(prepared)
                if torch is not None:
                    torch.cuda.synchronize(self.index)

            with self.named_errors():
                stats = time_callable(step, rel_tol=self.rel_tol, **asdict(policy))
        else:
            torch = self._torch()
            with self.named_errors():
                runner = load_runner(path, threads=threads, device=self.name)
                prepared = runner.prepare(list(inputs))
                stats = self._time_events(torch, runner, prepared, policy)
        stats.load_ms = runner.load_ms
        log.info("%s: %s median %.3f ms over %d runs", self.name, path.name, stats.median_ms, stats.runs)
        return stats

    def _time_events(self, torch: Any, runner: Any, prepared: Any, policy: MeasurePolicy) -> LatencyStats:
        def one() -> float:
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(self.index)
            start.record()
            runner.call(prepared)
            end.record()
            end.synchronize()
            return float(start.elapsed_time(end))

        with torch.cuda.device(self.index):
            first = one()
            for _ in range(max(0, policy.warmup - 1)):
                one()
            samples: list[float] = []
            t0 = time.perf_counter()
            min_runs = max(1, min(policy.min_runs, policy.max_runs))
            while len(samples) < policy.max_runs:
                samples.append(one())
                if len(samples) >= min_runs and is_stable(samples, self.rel_tol):
                    break
                if time.perf_counter() - t0 >= policy.max_seconds:
                    break
        return summarize(samples, len(samples), None, first)


def _driver_version(index: int) -> str | None:
    try:
        import pynvml  # type: ignore

        pynvml.nvmlInit()
        try:
            v = pynvml.nvmlSystemGetDriverVersion()
            return v.decode() if isinstance(v, bytes) else str(v)
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        pass
    import shutil
    import subprocess

    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader", "-i", str(index)],
                             capture_output=True, text=True, timeout=20)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.TimeoutExpired):
        return None
