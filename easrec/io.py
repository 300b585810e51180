"""Files and versions: atomic writes, JSON reading and writing, output checks, installed package versions.

Every file easrec writes goes through `atomic_write_bytes` (a temporary file in the same folder,
fsync, rename), so a crash or a full disk leaves the previous version whole. A command that trains
for an hour or measures a whole LUT and then fails to save it wastes the work; `ensure_writable`
probes the location first (creating and removing a small file), so a read-only folder, a full disk
or a path through a regular file fails at once, in one line.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Iterator

from easrec.errors import EasrecError

log = logging.getLogger(__name__)

# Bytes written by the probe: enough that a full file system refuses them (an empty file needs no block).
PROBE_BYTES = 4096


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and rename, so readers never see half a file."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates 0600; give the file the permissions a plain open() would (0666 minus umask).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None:
            # A failed write (ENOSPC, EIO) carries no file name; name the file being written for the one-line error.
            exc.filename = path
        raise


@contextlib.contextmanager
def atomic_target(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary file beside `path` for a writer that wants a file name; renamed onto `path` on success, removed on failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temporary name keeps the suffix: some writers (torch.export.save) insist on theirs.
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.tmp-", suffix=path.suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; the result is an ordinary file
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike, what: str = "file") -> Any:
    """Read a JSON file; a missing file or invalid JSON is a one-line EasrecError naming the file (`what` names its role)."""
    path = Path(path)
    if not path.exists():
        raise EasrecError(f"{path}: {what} not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise EasrecError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    except UnicodeDecodeError as exc:
        raise EasrecError(f"{path}: not a UTF-8 JSON file ({exc.reason})") from None


def package_version(dist: str, default: str | None = None) -> str | None:
    """The installed version of distribution `dist` (`importlib.metadata`), or `default` when it is not installed."""
    try:
        return version(dist)
    except PackageNotFoundError:
        return default


def nearest_existing(path: Path) -> Path:
    """`path` itself when it exists, else its closest existing ancestor (the folder a mkdir -p would start from)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def os_error_reason(exc: OSError) -> str:
    """The reason part of an OSError, without errno numbers or repeated file names: 'Permission denied'."""
    if exc.strerror:
        return exc.strerror
    if exc.errno is not None:
        return os.strerror(exc.errno)
    return str(exc) or type(exc).__name__


def ensure_writable(path: str | os.PathLike, *, directory: bool = True, field: str | None = "--out") -> Path:
    """Raise a one-line EasrecError (naming `field`, the option that gave `path`) unless `path` can be written:
    a run directory (`directory=True`) or a file.

    Nothing is created but a probe file, removed again, in the closest existing folder of `path`
    (missing folders below it are created later by the command, as for `mkdir -p`).
    """
    path = Path(path)
    if path.exists():
        if directory and not path.is_dir():
            raise EasrecError(f"{path}: not a directory (an output folder is needed here)", field=field)
        if not directory and path.is_dir():
            raise EasrecError(f"{path}: is a directory (an output file is needed here)", field=field)
    # Files are replaced atomically by a rename in their folder, so the folder is what must be writable.
    folder = path if directory else path.parent
    existing = nearest_existing(folder)
    if not existing.is_dir():
        raise EasrecError(f"{path}: cannot create it: {existing} is not a directory", field=field)
    probe = None
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".easrec-probe-")
        with os.fdopen(fd, "wb") as f:
            f.write(b"\0" * PROBE_BYTES)
            f.flush()
    except OSError as exc:
        where = path if existing == Path(os.path.abspath(folder)) else f"{path} (in {existing})"
        raise EasrecError(f"{where}: not writable: {os_error_reason(exc)}", field=field) from None
    finally:
        if probe is not None:
            try:
                os.unlink(probe)
            except OSError:
                log.warning("could not remove the probe file %s", probe)
    return path
