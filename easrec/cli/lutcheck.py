"""Checks of a LUT file against what a command is about to do with it: device fingerprint and search space.

`profiling.lut` checks a file's own consistency (fields present, numbers finite and ordered); here the
CLI checks that the table belongs to the device, runtime, dtype, thread count and space at hand, and
says which field does not, in one line.
"""

from __future__ import annotations

from typing import Any

from easrec.errors import EasrecError


# Fields that identify the hardware beyond FINGERPRINT_FIELDS: two GPUs (or two phones) on one host share a cpu.
EXTRA_FIELDS = ("gpu", "model")


def fingerprint_fields() -> tuple[str, ...]:
    """Every device field a table must agree on: the LUT's FINGERPRINT_FIELDS plus the GPU and phone model."""
    from easrec.profiling.lut import FINGERPRINT_FIELDS

    return tuple(FINGERPRINT_FIELDS) + EXTRA_FIELDS


def expected_fingerprint(device: Any, runtime: str, dtype: str, threads: int | None = None) -> dict[str, Any]:
    """What a LUT for `device` with this runtime, dtype and thread count would store (None: threads not checked).

    The runtime version is this machine's, so it is compared only for devices that run here (cpu, cuda),
    and only when the runtime is installed here.
    """
    from easrec.profiling.lut import device_fingerprint

    info = device.info()
    try:
        fp = device_fingerprint(info, runtime, dtype)
    except EasrecError:
        fp = {**info, "runtime": runtime, "dtype": dtype}
    if getattr(device, "kind", None) not in ("cpu", "cuda"):
        fp.pop("runtime_version", None)
    fp.pop("threads", None)
    if threads is not None:
        fp["threads"] = threads
    return fp


def check_fingerprint(table: Any, expected: dict[str, Any], source: str | None = None, hint: str = "") -> None:
    """Raise naming the first device field where `table` (a LatencyTable) disagrees with `expected`.

    Only fields present in `expected` are compared; a field the table lacks counts as a difference.
    """
    stored = table.device
    source = source or getattr(table, "source", "LUT")
    for key in fingerprint_fields():
        if key not in expected:
            continue
        if key not in stored:
            if key in EXTRA_FIELDS:
                continue  # older tables did not record them; the FINGERPRINT_FIELDS still decide
            raise EasrecError(f"{source}: field 'device.{key}' is missing, this device has {expected[key]!r}{hint}")
        if stored[key] != expected[key]:
            raise EasrecError(f"{source}: field 'device.{key}' is {stored[key]!r} but this device has {expected[key]!r}; "
                              f"a LUT is valid for one device, runtime, dtype and thread count{hint}")


def check_space(table: Any, space: Any, source: str | None = None) -> None:
    """Raise naming the first search-space field where `space` differs from the table's own."""
    source = source or getattr(table, "source", "LUT")
    if space.hash() == table.space.hash():
        return
    mine, theirs = table.space.to_dict(), space.to_dict()
    for key in sorted(set(mine) | set(theirs)):
        if mine.get(key) != theirs.get(key):
            raise EasrecError(f"{source}: field 'space.{key}' is {mine.get(key)!r} but --space has {theirs.get(key)!r} "
                              "(a LUT is measured for one search space; drop --space to search the LUT's own)")
    raise EasrecError(f"{source}: field 'space' was measured for space {table.space.hash()}, not {space.hash()}")
