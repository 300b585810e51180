"""`ssh:USER@HOST[:PORT]`: a Linux board (Raspberry Pi, Jetson) with Python, easrec and the runtime.

Uses the system `ssh`/`scp` (key authentication only, never a password prompt). The artifact and an
`inputs.npz` go to a remote temporary directory; `PYTHON -m easrec.devices.remote` measures there
and prints one JSON object, which is parsed here. A board without Python measures `.pte` files with
easrec's native runner instead (`runner=PATH`: runner/ built on or for the board): the runner, the
artifact and the ids (`input_0.bin`) are copied over and its output parsed as on Android.
"""

from __future__ import annotations

import json
import logging
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from easrec.devices.base import Device
from easrec.devices.native_runner import check_output_version, measure_in_batches, parse_runner_output, runner_args
from easrec.devices.remote import save_inputs
from easrec.devices.timing import LatencyStats, MeasurePolicy

log = logging.getLogger(__name__)


class SshDevice(Device):
    """A remote Linux machine reached with `ssh`; options: identity, python, known_hosts, timeout, runner."""

    kind = "ssh"

    def __init__(
        self,
        host: str,
        user: str | None = None,
        port: int | None = None,
        *,
        identity: str | Path | None = None,
        python: str = "python3",
        known_hosts: str | Path | None = None,
        connect_timeout: int = 10,
        timeout: float = 900.0,
        keep: bool = False,
        runner: str | Path | None = None,
    ) -> None:
        target = f"{user}@{host}" if user else host
        super().__init__(f"ssh:{target}" + (f":{port}" if port else ""))
        self.host, self.user, self.port = host, user, port
        self.target = target
        self.identity = str(identity) if identity else None
        self.python = python
        self.known_hosts = str(known_hosts) if known_hosts else None
        self.connect_timeout = int(connect_timeout)
        self.timeout = float(timeout)
        self.keep = keep
        self.runner = Path(runner) if runner else None
        self._remote_dir: str | None = None

    # -- command lines -------------------------------------------------------------------------
    def _options(self) -> list[str]:
        opts = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new",
                "-o", f"ConnectTimeout={self.connect_timeout}"]
        if self.known_hosts:
            opts += ["-o", f"UserKnownHostsFile={self.known_hosts}"]
        if self.identity:
            opts += ["-i", self.identity, "-o", "IdentitiesOnly=yes"]
        return opts

    def ssh_command(self, remote: str) -> list[str]:
        """`ssh ... TARGET REMOTE` (REMOTE is one shell command line for the remote side)."""
        return ["ssh", *self._options(), *(["-p", str(self.port)] if self.port else []), self.target, remote]

    def scp_command(self, local: Path, remote_path: str) -> list[str]:
        """`scp ... LOCAL TARGET:REMOTE_PATH`."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        dest = f"{self.user}@{host}" if self.user else host
        return ["scp", "-q", *self._options(), *(["-P", str(self.port)] if self.port else []),
                str(local), f"{dest}:{remote_path}"]

    def _exec(self, cmd: list[str], step: str, timeout: float | None = None) -> subprocess.CompletedProcess:
        if shutil.which(cmd[0]) is None:
            raise self.fail(step, f"`{cmd[0]}` is not installed (install openssh-client)")
        out = self.run_tool(cmd, step, timeout or self.timeout, cmd[0])
        if out.returncode != 0:
            raise self.fail(step, _last_error_line(out) or f"exit status {out.returncode}")
        return out

    # -- Device API ----------------------------------------------------------------------------
    def remote_dir(self) -> str:
        """A private temporary directory on the remote side (created on first use)."""
        if self._remote_dir is None:
            out = self._exec(self.ssh_command("mktemp -d /tmp/easrec.XXXXXX"), "connecting", timeout=60)
            lines = out.stdout.strip().splitlines()
            if not lines or not lines[-1].startswith("/"):
                raise self.fail("connecting", f"mktemp printed {out.stdout.strip()!r}")
            self._remote_dir = lines[-1].strip()
        return self._remote_dir

    def close(self) -> None:
        """Remove the remote temporary directory (best effort)."""
        if self._remote_dir and not self.keep:
            try:
                self._exec(self.ssh_command(f"rm -rf {shlex.quote(self._remote_dir)}"), "cleaning up", timeout=60)
            except Exception as exc:
                log.warning("%s: could not remove %s: %s", self.name, self._remote_dir, exc)
        self._remote_dir = None

    def push(self, artifact: Path) -> str:
        """Copy a file into the remote temporary directory; return its remote path."""
        artifact = Path(artifact)
        if not artifact.is_file():
            raise self.fail(f"copying {artifact.name}", f"no such local file {artifact}")
        remote = f"{self.remote_dir()}/{artifact.name}"
        self._exec(self.scp_command(artifact, remote), f"copying {artifact.name}")
        return remote

    def _remote_json(self, args: list[str], step: str) -> dict[str, Any]:
        cmd = self.ssh_command(shlex.join([self.python, "-m", "easrec.devices.remote", *args]))
        if shutil.which("ssh") is None:
            raise self.fail(step, "`ssh` is not installed (install openssh-client)")
        out = self.run_tool(cmd, step, self.timeout, "ssh")
        obj = parse_json_object(out.stdout)
        if obj is None:
            raise self.fail(step, _last_error_line(out) or f"exit status {out.returncode} and no JSON on stdout")
        if "error" in obj:
            raise self.fail(step, obj["error"])
        if out.returncode != 0:
            raise self.fail(step, f"exit status {out.returncode}")
        return obj

    def info(self) -> dict[str, Any]:
        """The remote machine's fingerprint (from `PYTHON -m easrec.devices.remote info`, or the shell with a runner)."""
        if self.runner is not None:
            return self._shell_info()
        obj = self._remote_json(["info"], "reading info")
        return {**obj.get("info", {}), "kind": "ssh", "spec": self.name}

    def timed(self, artifact: Path, inputs: list[np.ndarray], threads: int, policy: MeasurePolicy) -> LatencyStats:
        """Copy artifact + inputs.npz, measure remotely, parse the JSON stats (or time it with the native runner)."""
        artifact = Path(artifact)
        if self.runner is not None:
            return self._measure_with_runner(artifact, inputs, threads, policy)
        try:
            remote_artifact = self.push(artifact)
            with tempfile.TemporaryDirectory(prefix="easrec-ssh-") as tmp:
                npz = Path(tmp) / "inputs.npz"
                save_inputs(npz, inputs)
                remote_inputs = self.push(npz)
            obj = self._remote_json(
                ["measure", "--artifact", remote_artifact, "--inputs", remote_inputs,
                 "--threads", str(threads), "--warmup", str(policy.warmup), "--min-runs", str(policy.min_runs),
                 "--max-runs", str(policy.max_runs), "--max-seconds", str(policy.max_seconds)],
                f"measuring {artifact.name}",
            )
        finally:
            if self._remote_dir is not None:
                self.close()
        if "stats" not in obj:
            raise self.fail(f"measuring {artifact.name}", "the remote JSON has no 'stats'")
        self.last_info = {**obj.get("info", {}), "kind": "ssh", "spec": self.name}
        stats = LatencyStats.from_dict(obj["stats"])
        log.info("%s: %s median %.3f ms over %d runs", self.name, artifact.name, stats.median_ms, stats.runs)
        return stats

    # -- the native runner, for boards without Python ------------------------------------------
    def _shell_info(self) -> dict[str, Any]:
        """The fingerprint from the remote shell (uname, nproc, /proc/cpuinfo): no Python needed."""
        out = self._exec(self.ssh_command("uname -s; uname -r; uname -m; nproc; "
                                          "grep -m1 -iE 'model name|^Model' /proc/cpuinfo || true"), "reading info", timeout=60)
        lines = [l.strip() for l in out.stdout.splitlines()]
        if len(lines) < 4:
            raise self.fail("reading info", f"unexpected output {out.stdout.strip()!r}")
        cpu = lines[4].split(":", 1)[-1].strip() if len(lines) > 4 else None
        return {"kind": "ssh", "spec": self.name, "cpu": cpu or None, "cores": int(lines[3]) if lines[3].isdigit() else None,
                "threads": getattr(self, "threads", None), "os": f"{lines[0]} {lines[1]}", "machine": lines[2],
                "python": None, "runtime": "executorch", "runtime_version": None, "runner": str(self.runner)}

    def _measure_with_runner(self, artifact: Path, inputs: list[np.ndarray], threads: int,
                             policy: MeasurePolicy) -> LatencyStats:
        step = f"measuring {artifact.name}"
        if artifact.suffix.lower() != ".pte":
            raise self.fail(step, "the native runner measures ExecuTorch .pte artifacts only")
        if not self.runner.is_file():
            raise self.fail(step, f"no such runner {self.runner}")
        if len(inputs) != 1 or np.asarray(inputs[0]).dtype != np.int64:
            raise self.fail(step, "the native runner takes one int64 input (item ids)")
        last: dict[str, Any] = {}

        def batch(n: int) -> dict[str, Any]:
            cmd = runner_args(remote_runner, remote_artifact, inputs=remote_ids, warmup=policy.warmup, iterations=n,
                              threads=threads)
            out = self._exec(self.ssh_command(shlex.join(cmd)), f"running easrec_runner on {artifact.name}")
            try:
                parsed = parse_runner_output(out.stdout)
            except ValueError as exc:
                raise self.fail(f"running easrec_runner on {artifact.name}", str(exc)) from exc
            if len(parsed["iterations_ms"]) != n:
                raise self.fail(f"running easrec_runner on {artifact.name}",
                                f"found {len(parsed['iterations_ms'])} of {n} iteration times")
            check_output_version(parsed, self.name)
            last.update(parsed)
            return parsed

        try:
            info = self._shell_info()
            remote_runner = self.push(self.runner)
            self._exec(self.ssh_command(f"chmod 755 {shlex.quote(remote_runner)}"), f"copying {self.runner.name}", timeout=60)
            remote_artifact = self.push(artifact)
            with tempfile.TemporaryDirectory(prefix="easrec-ssh-") as tmp:
                ids = Path(tmp) / "input_0.bin"
                ids.write_bytes(np.ascontiguousarray(inputs[0]).astype("<i8", copy=False).tobytes())
                remote_ids = self.push(ids)
            stats = measure_in_batches(batch, min_runs=policy.min_runs, max_runs=policy.max_runs,
                                       max_seconds=policy.max_seconds)
        finally:
            if self._remote_dir is not None:
                self.close()
        self.last_info = {**info, "threads": threads, "runtime_version": last.get("executorch")}
        log.info("%s: %s median %.3f ms over %d runs (native runner)", self.name, artifact.name, stats.median_ms, stats.runs)
        return stats


def parse_json_object(stdout: str) -> dict[str, Any] | None:
    """The one JSON object on stdout (the last line that parses as an object), or None."""
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                return obj
    return None


def _last_error_line(out: subprocess.CompletedProcess) -> str:
    """The most telling line of a failed command's stderr (ssh puts the reason last)."""
    lines = [l.strip() for l in (out.stderr or "").splitlines() if l.strip()]
    lines = [l for l in lines if not l.startswith("Warning: Permanently added")]
    return lines[-1] if lines else ""
