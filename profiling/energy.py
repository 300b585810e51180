"""Energy per inference of an exported artifact on a device, and where every figure comes from.

`measure_energy(artifact, inputs, device)` measures this machine (``cpu``, ``cuda``) with codecarbon
(`easrec.profiling.host_energy`: an idle window, then the inferences, per part, each figure marked
measured or estimated), and asks a device that meters itself for its own figure (``android:SERIAL``:
`AndroidDevice.energy`, the battery sampled on the phone, `easrec.devices.battery`). Results are
`EnergyResult`s (`easrec.devices.energy`). `energy_lut` (`easrec.profiling.energy_lut`) turns a
latency LUT into an energy LUT in the same file format.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
import numpy as np

from easrec.devices import Device, get_device, load_runner
from easrec.devices.battery import (
    BATTERY_DIR, android_energy_from_samples, battery_sampler_script, normalize_current_ua, normalize_voltage_uv,
    parse_battery_samples, parse_dumpsys_battery,
)
from easrec.devices.energy import EnergyResult, PartEnergy, combined_source
from easrec.errors import EasrecError
from easrec.export.artifact import sidecar_path
from easrec.export.bench import artifact_inputs as from_sidecar
from easrec.io import atomic_write_json
from easrec.profiling.energy_lut import energy_lut
from easrec.profiling.host_energy import KWH_TO_J, PARTS, RAPL_DIR, _stop, describe_sources, measure_host_energy

log = logging.getLogger(__name__)

# Re-exported: the energy API's parts, where callers have always found them.
__all__ = [
    "BATTERY_DIR", "KWH_TO_J", "PARTS", "RAPL_DIR", "EnergyResult", "PartEnergy", "android_energy_from_samples",
    "artifact_inputs", "battery_sampler_script", "combined_source", "describe_sources", "energy_lut",
    "measure_energy", "normalize_current_ua", "normalize_voltage_uv", "parse_battery_samples",
    "parse_dumpsys_battery", "save_energy", "_stop",
]


def measure_energy(
    artifact: str | Path,
    inputs: list[np.ndarray],
    device: Device | str = "cpu",
    runs: int = 200,
    *,
    threads: int = 1,
    **window: Any,
) -> EnergyResult:
    """Joules per inference of `artifact` on `inputs`, per part, net of an idle baseline.

    `device`: a spec string or a `Device` (`cpu`, `cuda[:N]`, `android:SERIAL`). On `cpu` and `cuda`,
    `window` holds codecarbon's options (`country_iso_code`, `warmup`, `min_seconds`,
    `measure_power_secs`, `tracking_mode`: see `easrec.profiling.host_energy.measure_host_energy`);
    other devices measure themselves (`Device.energy`).
    """
    if isinstance(device, str):
        device = get_device(device)
    artifact = Path(artifact)
    if runs < 1:
        raise EasrecError(f"--runs: need at least 1 inference, got {runs}")
    if not artifact.is_file():
        raise EasrecError(f"{artifact}: no such artifact")
    if getattr(device, "kind", "cpu") in ("cpu", "cuda"):
        return measure_host_energy(artifact, inputs, device, runs, threads=threads, **window)
    return device.energy(artifact, list(inputs), runs, threads=threads)


def save_energy(result: EnergyResult, path: str | Path) -> None:
    """Write `result.to_dict()` as JSON (the `energy.json` that `easrec report` reads)."""
    atomic_write_json(path, result.to_dict())


def artifact_inputs(path: str | Path, threads: int = 1) -> list[np.ndarray]:
    """Realistic inputs for an artifact: from its sidecar (`FILE.json`: batch, max_len, popular items),
    a half-full left-padded history of popular items, as `easrec bench` builds; without a sidecar,
    int64 ids of 1 in the shape the runtime reports."""
    path = Path(path)
    if sidecar_path(path).is_file():
        return from_sidecar(path)
    if path.suffix.lower() == ".pte" and not path.is_file():
        raise EasrecError(f"{path}: no such artifact")
    runner = load_runner(path, threads=threads)
    specs = runner.input_specs
    if not specs or any(shape is None for _, shape in specs):
        raise EasrecError(f"{path}: no sidecar {path.name}.json and the runtime does not report fixed input shapes")
    return [np.ones(shape, dtype=dtype) for dtype, shape in specs]
