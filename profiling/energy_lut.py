"""Energy lookup tables: a latency LUT turned into mJ per component by a measured net active power."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from easrec.devices.energy import EnergyResult
from easrec.errors import EasrecError
from easrec.io import atomic_write_json


def energy_lut(latency_lut_path: str | Path, power_w: float | EnergyResult | dict | str | Path,
               out: str | Path) -> dict[str, Any]:
    """Write an energy LUT: every entry = measured average net active power (W) × LUT latency (ms) = mJ.

    `power_w`: watts, an `EnergyResult`, its dict, or an `energy.json` path (its `net_power_w`,
    i.e. net-of-idle J/inference ÷ s/inference measured on the same device). The file keeps the
    latency LUT's format 1 (see `easrec.profiling.lut`) so `LatencyTable.load` reads it unchanged:
    ``"unit": "mJ"``; each entry's `median_ms`/`p10_ms`/`p90_ms` hold **millijoules** (the field
    names are the LUT class's), with the latency kept as `latency_median_ms`; the affine
    correction keeps `a` and scales `b` (and `per_block`) by the power (energy = P·(a·Σ + b)); an ``energy`` section
    states the method. Latency validation does not carry over (``validation`` = null).
    """
    latency_lut_path = Path(latency_lut_path)
    if isinstance(power_w, (str, Path)):
        try:
            power_w = json.loads(Path(power_w).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise EasrecError(f"{power_w}: not a readable energy JSON ({exc})") from exc
    energy_src: dict[str, Any] = {}
    if isinstance(power_w, EnergyResult):
        power_w = power_w.to_dict()
    if isinstance(power_w, dict):
        energy_src = {k: power_w.get(k) for k in ("artifact", "device", "source", "tool", "joules_per_inference",
                                                   "latency_ms_mean")}
        if "net_power_w" not in power_w:
            raise EasrecError("energy: field 'net_power_w' is missing (measure with `easrec energy` first)")
        power_w = power_w["net_power_w"]
    power = float(power_w)
    if not math.isfinite(power) or power <= 0:
        raise EasrecError(f"energy LUT: the power must be a positive number of watts, got {power_w!r}")
    try:
        data = json.loads(latency_lut_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise EasrecError(f"{latency_lut_path}: not a readable JSON LUT ({exc})") from exc
    if not isinstance(data, dict) or "entries" not in data:
        raise EasrecError(f"{latency_lut_path}: missing field 'entries'")
    if data.get("unit", "ms") != "ms":
        raise EasrecError(f"{latency_lut_path}: field 'unit' is {data.get('unit')!r}; an energy LUT is built from a latency (ms) LUT")
    entries = {}
    for cid, e in data["entries"].items():
        ne = dict(e)
        for key in ("median_ms", "p10_ms", "p90_ms", "raw_median_ms", "raw_p10_ms", "raw_p90_ms"):
            if isinstance(e.get(key), (int, float)):
                ne[key] = float(e[key]) * power
        ne["latency_median_ms"] = e.get("median_ms")
        entries[cid] = ne
    result = dict(data)
    result["entries"] = entries
    result["unit"] = "mJ"
    corr = dict(data.get("correction") or {"a": 1.0, "b": 0.0})
    corr["b"] = float(corr.get("b", 0.0)) * power
    if corr.get("per_block") is not None:
        corr["per_block"] = float(corr["per_block"]) * power
    result["correction"] = corr
    result["latency_validation"] = (data.get("validation") or {}).get("lut", {}).get("test") if data.get("validation") else None
    result["validation"] = None
    result["energy"] = {
        "method": "energy per component = measured average net active power x LUT latency (not measured per component)",
        "power_w": power, "latency_lut": str(latency_lut_path), "measurement": energy_src,
        "note": "entry fields median_ms/p10_ms/p90_ms hold millijoules (W x ms = mJ)",
    }
    atomic_write_json(out, result)
    return result
