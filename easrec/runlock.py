"""One writer per run directory, and no silent overwrite of a finished run.

`RunLock(run_dir, command)` holds `RUN/.easrec.lock` while a command writes the directory: the file
is created with O_CREAT|O_EXCL (atomic on local file systems) and holds the writer's pid, host,
command and start time as JSON. A second writer is refused in one line naming the holder. A lock
left by a process that is gone (same host, pid not alive) is taken over with a logged note; a lock
from another host is never judged stale, since its pid cannot be checked from here.

`check_overwrite(run_dir, force=..., resume=...)` refuses to start a new run over a finished one
(a directory with metrics.json or seeds.json) unless `--force` or `--resume` says so.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from easrec.errors import EasrecError

log = logging.getLogger(__name__)

LOCK_FILE = ".easrec.lock"
# A lock file that cannot be parsed is a writer between creating and filling it while it is younger
# than this; older, it is debris from a crash in that gap.
UNREADABLE_GRACE_SECONDS = 10.0
# Files whose presence means a run finished: a single run's metrics, or the seed summary of `train --seeds`.
FINISHED_MARKERS = ("metrics.json", "seeds.json", "seed-*/metrics.json")


@dataclass(frozen=True)
class LockHolder:
    """Who holds a run directory's lock, as written in the lock file."""

    pid: int
    host: str
    command: str
    started: str
    token: str = ""

    def describe(self) -> str:
        """'easrec train (pid 123 on host box, since 2025-01-01 10:00:00 UTC)'."""
        return f"{self.command} (pid {self.pid} on host {self.host}, since {self.started})"


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (signal 0 checks without sending anything)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    except OSError:
        return True  # cannot tell: never take over a lock on a guess
    return True


def read_holder(path: Path) -> tuple[LockHolder | None, bytes | None]:
    """(holder, raw bytes) of a lock file; holder None when unparseable, raw None when the file is gone."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return None, None
    try:
        data = json.loads(raw.decode("utf-8"))
        holder = LockHolder(pid=int(data["pid"]), host=str(data["host"]), command=str(data["command"]),
                            started=str(data["started"]), token=str(data.get("token", "")))
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None, raw
    return holder, raw


class RunLock:
    """Context manager holding RUN/.easrec.lock while a command writes RUN (the folder is created if needed)."""

    def __init__(self, run_dir: str | os.PathLike, command: str, field: str = "--out"):
        self.run_dir = Path(run_dir)
        self.field = field  # the option that named run_dir, for machine-readable errors
        self.path = self.run_dir / LOCK_FILE
        self.command = command
        self.token = uuid.uuid4().hex
        self.held = False

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()

    def _record(self) -> bytes:
        started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        return (json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                            "started": started, "token": self.token}) + "\n").encode("utf-8")

    def acquire(self) -> None:
        """Create the lock file, taking over a stale one; EasrecError naming the holder when another writer has it."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # A few rounds: each lost race (another process took over or released meanwhile) costs one.
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder, raw = read_holder(self.path)
                if raw is None:
                    continue  # released between our open and read: try again
                why = self._stale(holder)
                if why is None:
                    if holder is None:
                        raise EasrecError(f"{self.run_dir}: locked by another easrec that is starting "
                                          f"({self.path} is being written); try again in a moment", field=self.field)
                    raise EasrecError(f"{self.run_dir}: locked by {holder.describe()}; wait for it to finish or use "
                                      f"another output (remove {self.path} if that process is gone)", field=self.field)
                self._take_over(raw, why)
                continue
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(self._record())
                    f.flush()
                    os.fsync(f.fileno())
            except BaseException:
                self.path.unlink(missing_ok=True)
                raise
            self.held = True
            return
        raise EasrecError(f"{self.run_dir}: could not take the lock {self.path}: other processes keep racing for it",
                          field=self.field)

    def _stale(self, holder: LockHolder | None) -> str | None:
        """Why the lock's holder is gone (None: it may be alive, the lock holds)."""
        if holder is None:
            try:
                age = time.time() - self.path.stat().st_mtime
            except FileNotFoundError:
                return "released"
            return f"unreadable lock file, {age:.0f} s old" if age > UNREADABLE_GRACE_SECONDS else None
        if holder.host == socket.gethostname() and not pid_alive(holder.pid):
            return f"{holder.describe()} is no longer running"
        return None

    def _take_over(self, seen: bytes, why: str) -> None:
        """Remove the stale lock `seen` unless another process replaced it meanwhile (then leave theirs)."""
        aside = self.path.with_name(f"{LOCK_FILE}.stale-{self.token}")
        try:
            os.rename(self.path, aside)  # atomic: of two processes taking over, one moves the file
        except FileNotFoundError:
            return
        try:
            if aside.read_bytes() != seen:
                # Between our read and rename another process took the stale lock over and holds it now: put it back.
                try:
                    os.link(aside, self.path)  # fails if yet another lock appeared; never overwrites one
                except FileExistsError:
                    pass
                except OSError:
                    os.replace(aside, self.path)  # file systems without hard links (FAT on boards)
                return
            log.warning("%s: taking over a stale lock (%s)", self.run_dir, why)
        finally:
            aside.unlink(missing_ok=True)

    def release(self) -> None:
        """Remove the lock file if it is still ours (a lock taken over from us is left to its new holder)."""
        if not self.held:
            return
        self.held = False
        holder, _ = read_holder(self.path)
        if holder is None or holder.token != self.token:
            log.warning("%s: the lock was taken over by another process while this one ran; left in place", self.path)
            return
        self.path.unlink(missing_ok=True)


def finished_marker(run_dir: str | os.PathLike) -> Path | None:
    """The file showing that `run_dir` holds a finished run (metrics.json, seeds.json), or None."""
    run_dir = Path(run_dir)
    for pattern in FINISHED_MARKERS:
        found = sorted(run_dir.glob(pattern))
        if found:
            return found[0]
    return None


def check_overwrite(run_dir: str | os.PathLike, *, force: bool, resume: bool) -> None:
    """Refuse to write a new run over a finished one unless `force` (replace it) or `resume` (continue it)."""
    if resume:
        return
    marker = finished_marker(run_dir)
    if marker is None:
        return
    if force:
        log.warning("%s: --force: replacing the finished run there (%s)", run_dir, marker.name)
        return
    raise EasrecError(f"{run_dir}: holds a finished run ({marker.relative_to(run_dir)}); --resume continues it, "
                      "--force replaces it, or choose another --out", field="--out")
