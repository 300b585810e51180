"""argparse `type=` functions: numeric options are checked (range, finite) when the command line is parsed.

A bad value stops the command before anything loads, with argparse's own one-line message naming
the option (`--dropout must be in [0, 1), got 2`). `inf` and `nan` are refused by every
float type: they would pass a `> 0` check (`inf`) or every comparison (`nan`) and end up as
`Infinity`/`NaN` in JSON, which is not JSON.
"""

from __future__ import annotations

import argparse
import math
from typing import Callable, TypeVar

T = TypeVar("T", int, float)


def _int(text: str) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _float(text: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def _checked(parse: Callable[[str], T], ok: Callable[[T], bool], rule: str, doc: str) -> Callable[[str], T]:
    """An argparse type: `parse`, then refuse values that are not `ok` with "`rule`, got TEXT"."""

    def convert(text: str) -> T:
        value = parse(text)
        if not ok(value):
            raise argparse.ArgumentTypeError(f"{rule}, got {text}")
        return value

    convert.__doc__ = doc
    return convert


positive_int = _checked(_int, lambda v: v >= 1, "must be at least 1", "An integer >= 1.")
nonneg_int = _checked(_int, lambda v: v >= 0, "must be at least 0", "An integer >= 0.")
finite_float = _checked(_float, lambda v: True, "", "Any finite number (no inf, no nan).")
positive_float = _checked(_float, lambda v: v > 0, "must be positive", "A finite number > 0.")
nonneg_float = _checked(_float, lambda v: v >= 0, "must be at least 0", "A finite number >= 0.")
probability = _checked(_float, lambda v: 0 <= v < 1, "must be in [0, 1)", "A number in [0, 1): a dropout rate (1 would drop everything).")
