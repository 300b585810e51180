"""The one exception type the CLI turns into a one-line message and exit code 2."""

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


def check_choice(name: str, value: object, choices) -> None:
    """Raise the one-line "NAME must be one of A, B, got 'x'" for a value outside `choices`."""
    if value not in choices:
        raise EasrecError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}", field=name)
