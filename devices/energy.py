"""Energy per inference as every device reports it: per part (cpu, gpu, ram, battery), with its provenance.

Produced by `easrec.profiling.energy.measure_energy` (codecarbon on this machine) and by a device
that meters itself (`AndroidDevice.energy`: the phone's battery); `to_dict()` is what `energy.json` holds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class PartEnergy:
    """Energy of one part (cpu, gpu, ram, or battery) for one inference, with its provenance."""

    joules_per_inference: float          # net of idle, clamped at 0
    raw_joules_per_inference: float      # net of idle, not clamped (may be slightly negative: noise)
    gross_joules: float                  # the whole active window, idle not subtracted
    idle_joules: float                   # the whole idle window
    active_power_w: float                # mean power over the active window
    idle_power_w: float                  # mean power over the idle window
    source: str                          # measured | estimated | none
    method: str                          # e.g. "RAPL counters", "TDP x CPU load model", "NVML"
    explanation: str                     # why this source

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


@dataclass
class EnergyResult:
    """Energy per inference of one artifact on one device (`to_dict()` is what `energy.json` holds)."""

    artifact: str
    device: str
    runs: int
    threads: int
    active_seconds: float
    idle_seconds: float
    parts: dict[str, PartEnergy]
    joules_per_inference: float          # sum of the parts' net figures
    co2e_kg_per_inference: float | None  # codecarbon's carbon intensity for `country` × net energy
    country_iso_code: str | None
    source: str                          # measured if every non-none part is measured, else estimated (or mixed)
    tool: str                            # "codecarbon 3.3.2 (offline)" or "android battery sysfs"
    latency_ms_mean: float               # wall time per inference during the active window
    net_power_w: float                   # net active power (J/inference ÷ s/inference): for `energy_lut`
    warnings: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def millijoules_per_inference(self) -> float:
        """Net energy per inference in mJ."""
        return 1000.0 * self.joules_per_inference

    def to_dict(self) -> dict[str, Any]:
        """What `energy.json` holds (format easrec-energy/1)."""
        d = asdict(self)
        d["parts"] = {k: v.to_dict() for k, v in self.parts.items()}
        d["mj_per_inference"] = self.millijoules_per_inference
        d["format"] = "easrec-energy/1"
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EnergyResult":
        """Rebuild from `to_dict()` output."""
        data = {k: v for k, v in data.items() if k not in ("mj_per_inference", "format")}
        data["parts"] = {k: PartEnergy(**v) for k, v in data.get("parts", {}).items()}
        return cls(**data)


def combined_source(parts: dict[str, PartEnergy]) -> str:
    """measured / estimated when every part with a figure is, mixed when they differ, none without any."""
    sources = {p.source for p in parts.values() if p.source != "none"}
    if not sources:
        return "none"
    if sources == {"measured"}:
        return "measured"
    if sources == {"estimated"}:
        return "estimated"
    return "mixed"
