"""`android:SERIAL`: a phone over adb, timed by easrec's native runner (`runner/`, cross-compiled).

The user cross-compiles `runner/easrec_runner.cpp` for the phone with the NDK (arm64-v8a, XNNPACK;
the exact command is in runner/README.md) and passes the binary as the `runner=PATH` option. The
`.pte`, the runner and the input (raw little-endian int64 `.bin`, `[1, L]`) go to
/data/local/tmp/easrec/; the runner's per-iteration lines (`warmup i ms`, `iteration i ms`, see
`easrec.devices.native_runner`) are parsed: the same program and parser as on this machine, where
the parsing is tested on the runner's real output through a fake `adb`. Not yet run on a phone.
Every adb command line is built by `AndroidDevice.adb_command` and run by `Device.run_tool`.
"""

from __future__ import annotations

import logging
import math
import re
import shlex
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from easrec.devices.base import Device
from easrec.devices.battery import (
    android_energy_from_samples, battery_sampler_script, parse_battery_samples, parse_dumpsys_battery,
)
from easrec.devices.energy import EnergyResult
from easrec.devices.native_runner import (check_output_version, measure_in_batches, parse_runner_output, runner_args,
                                          runner_error)
from easrec.devices.timing import LatencyStats, MeasurePolicy

log = logging.getLogger(__name__)

REMOTE_DIR = "/data/local/tmp/easrec"
RUNNER_NAME = "easrec_runner"

# ExecuTorch's own executor_runner's ET_LOG lines: still read, for logs recorded with it.
_ITER_RE = re.compile(r"Iteration (\d+) of (\d+): ([0-9.eE+-]+) ms")
_LOAD_RE = re.compile(r"Model loaded in ([0-9.eE+-]+) ms")
_TOTAL_RE = re.compile(r"Model executed successfully (\d+) time\(s\) in ([0-9.eE+-]+) ms")
_CRASH_RE = re.compile(r"(Aborted|Segmentation fault|Illegal instruction|Bus error|CANNOT LINK EXECUTABLE|"
                       r"not executable|Permission denied|inaccessible or not found|No such file)")
_GONE_RE = re.compile(r"(device '[^']*' not found|device not found|no devices/emulators found|device offline|"
                      r"device unauthorized|device still authorizing)", re.I)


def parse_executor_runner_output(text: str, num_executions: int | None = None) -> dict[str, Any]:
    """Per-iteration times (ms, in order), load time and total from the runner's output.

    easrec_runner's lines (`parse_runner_output`) when present: {"iterations_ms", "warmup_ms",
    "load_ms", "executions", "total_ms", "topk"}. Otherwise ExecuTorch's executor_runner's ET_LOG
    lines (`Iteration i of n: x ms`, posix stderr or logcat), for logs recorded with it; with
    `num_executions`, only the last complete block `1..num_executions` counts there.
    """
    try:
        ours = parse_runner_output(text)
    except ValueError as exc:
        raise ValueError(f"easrec_runner output: {exc}") from exc
    if ours["format"] is not None:
        return {"iterations_ms": ours["iterations_ms"], "warmup_ms": ours["warmup_ms"], "load_ms": ours["load_ms"],
                "executions": ours["executions"], "total_ms": ours["total_ms"], "topk": ours["topk"],
                "executorch": ours["executorch"]}
    iters: list[tuple[int, int, float]] = [
        (int(m.group(1)), int(m.group(2)), float(m.group(3))) for m in _ITER_RE.finditer(text)
    ]
    if num_executions is not None:
        iters = [it for it in iters if it[1] == num_executions]
        starts = [k for k, it in enumerate(iters) if it[0] == 1]
        if starts:
            iters = iters[starts[-1]:]
    times = [t for _, _, t in iters]
    if iters and [i for i, _, _ in iters] != list(range(1, len(iters) + 1)):
        raise ValueError("iteration lines are out of order or missing")
    loads = _LOAD_RE.findall(text)
    totals = _TOTAL_RE.findall(text)
    return {
        "iterations_ms": times,
        "warmup_ms": [],
        "load_ms": float(loads[-1]) if loads else None,
        "executions": int(totals[-1][0]) if totals else None,
        "total_ms": float(totals[-1][1]) if totals else None,
        "topk": [],
        "executorch": None,
    }


class AndroidDevice(Device):
    """An Android phone reached with adb; options: runner (easrec_runner cross-compiled for the phone), adb."""

    kind = "android"

    def __init__(self, serial: str, *, runner: str | Path | None = None, adb: str | None = None,
                 remote_dir: str = REMOTE_DIR, timeout: float = 600.0) -> None:
        super().__init__(f"android:{serial}")
        self.serial = serial
        self.runner = Path(runner) if runner else None
        self.adb = adb
        self.remote_dir = remote_dir.rstrip("/")
        self.timeout = timeout
        self.rel_tol = 0.02  # relative change of the median that ends measuring (see timing.is_stable)

    # -- adb -----------------------------------------------------------------------------------
    def _adb_path(self, step: str) -> str:
        adb = self.adb or shutil.which("adb")
        if not adb:
            raise self.fail(step, "`adb` is not on PATH (install Android platform-tools or pass adb=PATH)")
        return adb

    def adb_command(self, *args: str) -> list[str]:
        """The full command line `adb -s SERIAL ARGS...` (the only builder of adb command lines)."""
        return [self.adb or shutil.which("adb") or "adb", "-s", self.serial, *args]

    def _adb(self, step: str, *args: str, timeout: float | None = None, check: bool = True) -> subprocess.CompletedProcess:
        self._adb_path(step)
        out = self.run_tool(self.adb_command(*args), step, timeout or self.timeout, "adb")
        text = f"{out.stdout or ''}\n{out.stderr or ''}"
        gone = _GONE_RE.search(text)
        if gone:
            raise self.fail(step, f"{gone.group(1)} (is it plugged in and authorized? see `adb devices`)")
        if check and out.returncode != 0:
            raise self.fail(step, _tail(out) or f"adb exit status {out.returncode}")
        return out

    def _shell(self, step: str, command: str, **kw: Any) -> str:
        return self._adb(step, "shell", command, **kw).stdout.strip()

    # -- Device API ----------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """Model, Android release, ABI, SoC and cpu0's frequency governor."""
        prop = lambda name: self._shell("reading device properties", f"getprop {name}", timeout=30)  # noqa: E731
        governor = self._adb("reading cpu governor", "shell", "cat /sys/devices/system/cpu/cpu0/cpufreq/scaling_governor",
                             timeout=30, check=False)
        return {
            "kind": "android",
            "spec": self.name,
            "serial": self.serial,
            "model": prop("ro.product.model"),
            "os": f"Android {prop('ro.build.version.release')}",
            "machine": prop("ro.product.cpu.abi"),
            "cpu": prop("ro.soc.model") or None,
            "governor": governor.stdout.strip() if governor.returncode == 0 else None,
            "runtime": "executorch",
        }

    def energy_supported(self) -> bool:
        """Whether the battery exposes current and voltage readings."""
        out = self._adb("reading battery", "shell", "cat /sys/class/power_supply/battery/current_now "
                        "/sys/class/power_supply/battery/voltage_now", timeout=30, check=False)
        return out.returncode == 0 and len(out.stdout.split()) == 2

    def energy(self, artifact: Path, inputs: list[np.ndarray], runs: int, *, threads: int = 1,
               period_s: float = 0.1, min_seconds: float = 5.0) -> EnergyResult:
        """Battery power while the runner runs `runs` inferences, minus an idle window of the same length."""
        artifact = Path(artifact)
        if artifact.suffix.lower() != ".pte":
            raise self.fail(f"measuring energy of {artifact.name}", "android measures ExecuTorch .pte artifacts only")
        battery = parse_dumpsys_battery(self._shell("reading battery", "dumpsys battery", timeout=30))
        warnings = []
        if battery["plugged"]:
            warnings.append("the phone is on a charger (dumpsys battery: powered): the battery current includes the "
                            "charger's, so these figures are not the inference's energy; unplug (adb over Wi-Fi)")
        runner = self.push_runner()
        model = self.push(artifact)
        remote_inputs = self.push_inputs(list(inputs))
        # A first run sizes the window: at least min_seconds, so the ~10 Hz sampling gets enough points.
        probe = self._run_once(runner, model, remote_inputs, 10, threads, artifact.name)
        per_run_s = max(1e-5, statistics.median(probe["iterations_ms"]) / 1000.0)
        n = max(runs, int(math.ceil(min_seconds / per_run_s)))
        body = self.runner_command(runner, model, remote_inputs, n, threads).replace(" 2>&1", "")
        out = self._adb(f"measuring energy of {artifact.name}", "shell", battery_sampler_script(body, period_s), check=False)
        active = parse_battery_samples(out.stdout or "")
        if active["rc"] not in (0, None):
            raise self.fail(f"running {RUNNER_NAME} on {artifact.name}", f"exit status {active['rc']}")
        parsed = parse_executor_runner_output(active["runner_output"], n)
        active_s = (parsed["total_ms"] / 1000.0) if parsed.get("total_ms") else active["seconds"]
        idle_out = self._adb("measuring idle battery power", "shell",
                             battery_sampler_script(f"sleep {max(active['seconds'], 1.0):.2f}", period_s), check=False)
        idle = parse_battery_samples(idle_out.stdout or "")
        part = android_energy_from_samples(active, idle, n, active_s)
        if part.raw_joules_per_inference < 0:
            warnings.append("active power was below idle power (noise): the net figure is clamped at 0")
        s_per_inf = active_s / n
        return EnergyResult(
            artifact=str(artifact), device=self.name, runs=n, threads=threads, active_seconds=active_s,
            idle_seconds=idle["seconds"], parts={"battery": part}, joules_per_inference=part.joules_per_inference,
            co2e_kg_per_inference=None, country_iso_code=None, source="measured", tool="android battery sysfs via adb",
            latency_ms_mean=1000.0 * s_per_inf, net_power_w=part.joules_per_inference / s_per_inf, warnings=warnings,
            extra={"battery": battery, "requested_runs": runs, "period_s": period_s,
                   "current_unit": active["current_unit"], "discharge_sign": active["discharge_sign"]},
        )

    def push(self, artifact: Path) -> str:
        """Copy a file to /data/local/tmp/easrec/ on the phone; return its path there."""
        artifact = Path(artifact)
        step = f"copying {artifact.name}"
        if not artifact.is_file():
            raise self.fail(step, f"no such local file {artifact}")
        self._adb(step, "shell", f"mkdir -p {self.remote_dir}", timeout=60)
        remote = f"{self.remote_dir}/{artifact.name}"
        self._adb(step, "push", str(artifact), remote)
        return remote

    def push_runner(self) -> str:
        """Copy the user's easrec_runner (cross-compiled from runner/) and make it executable."""
        step = f"copying {RUNNER_NAME}"
        if self.runner is None:
            raise self.fail(step, "no runner given: pass runner=PATH (--runner) to easrec_runner cross-compiled "
                            "for the phone from runner/ (arm64-v8a, XNNPACK; see runner/README.md)")
        if not self.runner.is_file():
            raise self.fail(step, f"no such file {self.runner}")
        self._adb(step, "shell", f"mkdir -p {self.remote_dir}", timeout=60)
        remote = f"{self.remote_dir}/{RUNNER_NAME}"
        self._adb(step, "push", str(self.runner), remote)
        self._adb(step, "shell", f"chmod 755 {remote}", timeout=60)
        return remote

    def push_inputs(self, inputs: list[np.ndarray]) -> list[str]:
        """Write each input as raw little-endian int64 (input_K.bin) and copy it to the phone."""
        remote = []
        with tempfile.TemporaryDirectory(prefix="easrec-adb-") as tmp:
            for k, arr in enumerate(inputs):
                arr = np.asarray(arr)
                if arr.dtype != np.int64:
                    raise self.fail("writing inputs", f"input {k} has dtype {arr.dtype}, expected int64 item ids")
                path = Path(tmp) / f"input_{k}.bin"
                path.write_bytes(np.ascontiguousarray(arr).astype("<i8", copy=False).tobytes())
                remote.append(self.push(path))
        return remote

    def runner_command(self, runner: str, model: str, inputs: list[str], executions: int, threads: int,
                       warmup: int = 0) -> str:
        """The shell line run on the phone: `warmup` warm-up, then `executions` timed iterations (stderr merged)."""
        if len(inputs) != 1:
            raise self.fail("running easrec_runner", f"easrec artifacts take one input (item ids), got {len(inputs)}")
        args = runner_args(runner, model, inputs=inputs[0], warmup=warmup, iterations=executions, threads=threads)
        return f"cd {self.remote_dir} && {shlex.join(args)} 2>&1"

    def _run_once(self, runner: str, model: str, inputs: list[str], executions: int, threads: int,
                  name: str, warmup: int = 0) -> dict[str, Any]:
        step = f"running {RUNNER_NAME} on {name}"
        out = self._adb(step, "shell", self.runner_command(runner, model, inputs, executions, threads, warmup),
                        check=False)
        text = f"{out.stdout or ''}\n{out.stderr or ''}"
        if out.returncode != 0:
            crash = _CRASH_RE.search(text)
            detail = runner_error(text) or (crash.group(0) if crash else _tail(out))
            raise self.fail(step, f"exit status {out.returncode}: {detail}")
        try:
            parsed = parse_executor_runner_output(text, executions)
        except ValueError as exc:
            raise self.fail(step, str(exc)) from exc
        if len(parsed["iterations_ms"]) != executions:
            crash = _CRASH_RE.search(text)
            detail = crash.group(0) if crash else f"found {len(parsed['iterations_ms'])} of {executions} iteration times"
            raise self.fail(step, detail)
        check_output_version(parsed, self.name)
        return parsed

    def timed(self, artifact: Path, inputs: list[np.ndarray], threads: int, policy: MeasurePolicy) -> LatencyStats:
        """Run easrec_runner: `warmup` warm-up and min_runs timed iterations (more batches until stable or max_runs)."""
        artifact = Path(artifact)
        if artifact.suffix.lower() != ".pte":
            raise self.fail(f"measuring {artifact.name}", "android measures ExecuTorch .pte artifacts only")
        self._adb_path(f"measuring {artifact.name}")
        runner = self.push_runner()
        model = self.push(artifact)
        remote_inputs = self.push_inputs(inputs)
        stats = measure_in_batches(
            lambda n: self._run_once(runner, model, remote_inputs, n, threads, artifact.name, warmup=policy.warmup),
            min_runs=policy.min_runs, max_runs=policy.max_runs, max_seconds=policy.max_seconds, rel_tol=self.rel_tol)
        log.info("%s: %s median %.3f ms over %d runs", self.name, artifact.name, stats.median_ms, stats.runs)
        return stats


def _tail(out: subprocess.CompletedProcess) -> str:
    lines = [l.strip() for l in f"{out.stdout or ''}\n{out.stderr or ''}".splitlines() if l.strip()]
    return lines[-1] if lines else ""
