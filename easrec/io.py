"""Output locations: check that a command can write where it is told to, before it starts the work.

A command that trains for an hour or measures a whole LUT and then fails to save it wastes the
work; `ensure_writable` probes the location first (creating and removing a small file), so a
read-only folder, a full disk or a path through a regular file fails at once, in one line.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from easrec.errors import EasrecError

log = logging.getLogger(__name__)

# Bytes written by the probe: enough that a full file system refuses them (an empty file needs no block).
PROBE_BYTES = 4096


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
