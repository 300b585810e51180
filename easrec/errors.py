"""The one exception type the CLI turns into a one-line message and exit code 2, and atomic file writers."""

from __future__ import annotations

import re

# "field 'x'" in a message names the input field at fault; "--opt" at its start names a command-line option.
_FIELD_IN_MESSAGE = re.compile(r"field '([^']+)'")
_OPTION_AT_START = re.compile(r"^(--[a-z0-9][a-z0-9-]*)")


class EasrecError(Exception):
    """A user-facing error: bad input, a mismatched file, an infeasible request.

    The message is one line and names the file, line or field at fault. ``field`` names the input
    field or option for machine-readable errors (`--json`); when not given it is read from the
    message ("field 'k'" or a leading "--option").
    """

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self._field = field

    @property
    def field(self) -> str | None:
        """The field or option at fault, or None when the message names none."""
        if self._field is not None:
            return self._field
        return field_of(str(self))


def field_of(message: str) -> str | None:
    """The field a one-line error message names ("field 'x'" anywhere, or a leading --option), else None."""
    found = _FIELD_IN_MESSAGE.search(message)
    if found:
        return found.group(1)
    found = _OPTION_AT_START.match(message)
    return found.group(1) if found else None


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and rename, so readers never see half a file."""
    import os
    import tempfile

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


def atomic_write_text(path, text: str) -> None:
    """Write ``text`` (UTF-8) atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj) -> None:
    """Write ``obj`` as indented JSON atomically."""
    import json

    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")
