"""The machine's load average, sampled while measuring: numbers from a loaded machine are marked as such."""

from __future__ import annotations

import os
from typing import Any

import numpy as np


def load_average() -> float | None:
    """1-minute load average of this machine (None where the OS has none)."""
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return None


class LoadMonitor:
    """Samples of the 1-minute load average taken during a phase; `summary()` for the record."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.sample()

    def sample(self) -> None:
        """Record the load now."""
        v = load_average()
        if v is not None:
            self.samples.append(v)

    def summary(self) -> dict[str, Any]:
        """Start, end, min, mean and max of the samples, and the core count they compare with."""
        self.sample()
        s = self.samples
        if not s:
            return {"available": False}
        return {"start": s[0], "end": s[-1], "min": min(s), "mean": float(np.mean(s)), "max": max(s),
                "samples": len(s), "cores": os.cpu_count()}
