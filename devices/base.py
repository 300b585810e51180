"""The `Device` interface, the device spec parser and discovery of reachable devices."""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from easrec.devices.energy import EnergyResult
from easrec.devices.timing import LatencyStats, MeasurePolicy
from easrec.errors import EasrecError

log = logging.getLogger(__name__)

KINDS = ("cpu", "cuda", "android", "ssh")


class Device(ABC):
    """One measurement target: this CPU, a GPU, a phone over adb, a board over ssh."""

    kind: str = ""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    @abstractmethod
    def info(self) -> dict[str, Any]:
        """Fingerprint: kind, cpu model, cores, threads, os, machine, python (gpu for cuda)."""

    @abstractmethod
    def push(self, artifact: Path) -> str:
        """Make `artifact` available on the device; return where it lives there."""

    def measure(
        self,
        artifact: Path,
        inputs: list[np.ndarray],
        *,
        threads: int | None = None,
        warmup: int = 10,
        min_runs: int = 30,
        max_runs: int = 200,
        max_seconds: float = 10.0,
    ) -> LatencyStats:
        """Latency of `artifact` on `inputs`: load time, first run and steady state separated.

        `threads` None is the device's default (`default_threads`); the other options make the
        `MeasurePolicy` every backend's `timed` follows.
        """
        threads = self.default_threads() if threads is None else int(threads)
        return self.timed(Path(artifact), list(inputs), threads, MeasurePolicy(warmup, min_runs, max_runs, max_seconds))

    def default_threads(self) -> int:
        """Threads a measurement uses when the caller names none."""
        return 1

    @abstractmethod
    def timed(self, artifact: Path, inputs: list[np.ndarray], threads: int, policy: MeasurePolicy) -> LatencyStats:
        """Time `artifact` on `inputs` with `threads` runtime threads, stopping as `policy` says."""

    def energy_supported(self) -> bool:
        """Whether this device can measure energy (not only estimate it)."""
        return False

    def energy(self, artifact: Path, inputs: list[np.ndarray], runs: int, *, threads: int = 1) -> EnergyResult:
        """Energy per inference metered by the device itself (a phone's battery).

        This machine's CPU and GPU are measured with codecarbon by `easrec.profiling.energy`; a device
        with no meter of its own refuses in one line.
        """
        raise EasrecError(f"{self.name}: energy is measured on cpu, cuda and android devices, not {self.kind}")

    @contextlib.contextmanager
    def named_errors(self) -> Iterator[None]:
        """Prefix the device name to EasrecErrors raised inside (runner errors name file and step)."""
        try:
            yield
        except EasrecError as exc:
            if str(exc).startswith(f"{self.name}: "):
                raise
            raise EasrecError(f"{self.name}: {exc}") from exc

    def fail(self, step: str, detail: str) -> EasrecError:
        """An EasrecError naming this device and the step that failed."""
        detail = " ".join(str(detail).split()) or "unknown error"
        return EasrecError(f"{self.name}: {step} failed: {detail}")

    def run_tool(self, cmd: list[str], step: str, timeout: float, tool: str) -> subprocess.CompletedProcess:
        """Run `cmd` (adb, ssh, scp) for `step`; a timeout or a tool that cannot start is `fail(step, ...)`."""
        log.debug("%s: %s", self.name, shlex.join(cmd))
        try:
            return run_command(cmd, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise self.fail(step, f"{tool} timed out after {exc.timeout:.0f} s") from exc
        except OSError as exc:
            raise self.fail(step, f"cannot run {tool}: {exc}") from exc


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or platform.processor())."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware", "cpu model") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def host_fingerprint(threads: int | None = None) -> dict[str, Any]:
    """Fingerprint of the machine this Python runs on."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "threads": threads,
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "python": platform.python_version(),
        "hostname": platform.node(),
    }


def run_command(cmd: list[str], *, timeout: float) -> subprocess.CompletedProcess:
    """Run one command line (adb, ssh, scp), capturing text output: the single place devices execute tools."""
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


_SSH_RE = re.compile(r"^(?:(?P<user>[^@\s:]+)@)?(?P<host>\[[^\]]+\]|[^@\s:]+)(?::(?P<port>\d+))?$")


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Split a device spec into its kind and parsed fields (no connection is made)."""
    if not isinstance(spec, str) or not spec.strip():
        raise EasrecError("device spec: empty (expected cpu, cpu:N, cuda, cuda:N, android:SERIAL or ssh:USER@HOST[:PORT])")
    spec = spec.strip()
    kind, _, rest = spec.partition(":")
    kind = kind.lower()
    if kind == "cpu":
        if not rest:
            return "cpu", {}
        if not rest.isdigit() or int(rest) < 1:
            raise EasrecError(f"device spec {spec!r}: cpu:N needs a positive thread count N")
        return "cpu", {"threads": int(rest)}
    if kind == "cuda":
        if not rest:
            return "cuda", {"index": 0}
        if not rest.isdigit():
            raise EasrecError(f"device spec {spec!r}: cuda:N needs a GPU index N")
        return "cuda", {"index": int(rest)}
    if kind == "android":
        if not rest or any(c.isspace() for c in rest):
            raise EasrecError(f"device spec {spec!r}: android:SERIAL needs the serial shown by `adb devices`")
        return "android", {"serial": rest}
    if kind == "ssh":
        m = _SSH_RE.match(rest)
        if not rest or not m:
            raise EasrecError(f"device spec {spec!r}: expected ssh:USER@HOST[:PORT]")
        port = int(m.group("port")) if m.group("port") else None
        if port is not None and not 0 < port < 65536:
            raise EasrecError(f"device spec {spec!r}: port {port} is out of range")
        return "ssh", {"user": m.group("user"), "host": m.group("host").strip("[]"), "port": port}
    raise EasrecError(f"device spec {spec!r}: unknown kind {kind!r} (expected one of {', '.join(KINDS)})")


def list_devices() -> list[dict[str, Any]]:
    """What is reachable from here: this CPU, CUDA GPUs (if torch sees any), adb devices (if adb is on PATH)."""
    fp = host_fingerprint()
    found: list[dict[str, Any]] = [
        {"spec": "cpu", "kind": "cpu", "name": fp["cpu"], "cores": fp["cores"], "status": "available"}
    ]
    found.extend(_cuda_devices())
    found.extend(_adb_devices())
    return found


def _cuda_devices() -> list[dict[str, Any]]:
    try:
        import torch
    except ImportError:
        return []
    try:
        if not torch.cuda.is_available():
            return []
        result = []
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            result.append({
                "spec": f"cuda:{i}", "kind": "cuda", "name": props.name,
                "memory_gb": round(props.total_memory / 2**30, 2), "status": "available",
            })
        return result
    except Exception as exc:  # a broken driver must not break listing
        log.warning("cuda: listing GPUs failed: %s", exc)
        return []


def parse_adb_devices(text: str) -> list[dict[str, Any]]:
    """Parse `adb devices -l` output into one dict per device line."""
    result = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("List of devices") or line.startswith("*"):
            continue
        parts = line.split()
        if len(parts) < 2:
            continue
        serial, state = parts[0], parts[1]
        extra = dict(p.split(":", 1) for p in parts[2:] if ":" in p)
        result.append({
            "spec": f"android:{serial}", "kind": "android", "name": extra.get("model", serial),
            "serial": serial, "status": state, **{k: v for k, v in extra.items() if k in ("product", "device", "transport_id")},
        })
    return result


def _adb_devices() -> list[dict[str, Any]]:
    adb = shutil.which("adb")
    if not adb:
        return []
    try:
        out = subprocess.run([adb, "devices", "-l"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("adb: `adb devices -l` failed: %s", exc)
        return []
    if out.returncode != 0:
        log.warning("adb: `adb devices -l` exited %d: %s", out.returncode, out.stderr.strip())
        return []
    return parse_adb_devices(out.stdout)


def python_executable() -> str:
    """This interpreter (used by tests to point ssh at the same venv)."""
    return sys.executable
