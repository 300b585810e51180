"""Energy per inference on this machine (``cpu``, ``cuda``) with codecarbon, and where every figure comes from.

codecarbon's ``OfflineEmissionsTracker`` (never the online tracker, which contacts the network) is run
twice in this process: first around an idle window (the process sleeps) whose length is the expected
duration of the inferences, then around ``runs`` inferences of the artifact. For each part (CPU, GPU,
RAM)::

    J/inference = (E_active − P_idle · T_active) / runs          P_idle = E_idle / T_idle

codecarbon reports energy in kWh (×3.6e6 → J) and emissions in kg CO2e. It picks its way of
getting power silently, so every part carries a ``source``:

- ``measured``: RAPL energy counters (``/sys/class/powercap/intel-rapl``), the Windows energy meter,
  Apple ``powermetrics``, a Raspberry Pi PMIC, NVML / AMD SMI for GPUs (counters, ~100 ms updates);
- ``estimated``: codecarbon's TDP × CPU-load model (what a container without RAPL gets; the CPU
  *model*'s TDP comes from codecarbon's table), a constant CPU power, or RAM's constant-power
  model (≈ 3 W per 8 GB, or 10 W minimum): with a constant model the idle-subtracted RAM energy
  is ~0 by construction;
- ``none``: no such hardware (no GPU).

Each part also gets an ``explanation`` (why that source, e.g. "/sys/class/powercap is absent"),
read from codecarbon's hardware objects (`describe_sources`).
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from easrec.devices import Device
from easrec.devices.energy import EnergyResult, PartEnergy, combined_source
from easrec.devices.runners import load_runner
from easrec.errors import EasrecError
from easrec.io import package_version

log = logging.getLogger(__name__)

KWH_TO_J = 3.6e6
PARTS = ("cpu", "gpu", "ram")
RAPL_DIR = "/sys/class/powercap/intel-rapl"


def _codecarbon_version() -> str:
    return package_version("codecarbon", "unknown")


def _quiet_codecarbon() -> None:
    # codecarbon logs INFO lines through its own logger even with log_level="error" at init.
    logging.getLogger("codecarbon").setLevel(logging.ERROR)


def _new_tracker(country_iso_code: str, measure_power_secs: float, tracking_mode: str, gpu_ids: list[int] | None):
    from codecarbon import OfflineEmissionsTracker

    _quiet_codecarbon()
    kwargs: dict[str, Any] = dict(
        country_iso_code=country_iso_code, save_to_file=False, log_level="error",
        measure_power_secs=measure_power_secs, tracking_mode=tracking_mode, allow_multiple_runs=True,
        project_name="easrec-energy",
    )
    if gpu_ids is not None:
        kwargs["gpu_ids"] = gpu_ids
    try:
        return OfflineEmissionsTracker(**kwargs)
    except Exception as exc:  # bad country code and the like
        raise EasrecError(f"codecarbon: cannot create the offline tracker: {exc}") from exc


_WARM: set[tuple] = set()


def _warm_codecarbon(country_iso_code: str, tracking_mode: str, gpu_ids: list[int] | None) -> None:
    """Run codecarbon's hardware detection once per process (seconds of CPU work in threads) so
    that it never falls inside the idle baseline."""
    key = (country_iso_code, tracking_mode, tuple(gpu_ids or ()))
    if key in _WARM:
        return
    tracker = _new_tracker(country_iso_code, 60.0, tracking_mode, gpu_ids)
    tracker.start()
    tracker.stop()
    _WARM.add(key)


def _stop(tracker, what: str):
    """tracker.stop() and its EmissionsData; codecarbon swallows its own errors and returns None."""
    emissions = tracker.stop()
    data = getattr(tracker, "final_emissions_data", None)
    if emissions is None or data is None:
        raise EasrecError(
            f"codecarbon: the tracker around {what} returned no result (stop() gave None: codecarbon "
            "swallowed an error; rerun with --debug to see its log)"
        )
    return data


def describe_sources(tracker) -> dict[str, dict[str, str]]:
    """How codecarbon got each part's power, from the tracker's hardware objects (after start()).

    Returns {"cpu"|"gpu"|"ram": {"source", "method", "explanation"}}. Inspects
    ``tracker._hardware`` (codecarbon 3.x: RAM, CPU with ``_mode``/``_tdp``/``_is_generic_tdp``,
    GPU, AppleSiliconChip with ``chip_part``, Raspberry); unknown objects are reported as estimated.
    """
    hardware = list(getattr(tracker, "_hardware", []) or [])
    conf = getattr(tracker, "_conf", {}) or {}
    out: dict[str, dict[str, str]] = {
        "gpu": {"source": "none", "method": "none", "explanation": "codecarbon found no NVIDIA/AMD GPU (NVML/AMD SMI)"},
    }
    rapl_present = os.path.isdir(RAPL_DIR)
    powercap_note = (
        f"{RAPL_DIR} exists but codecarbon could not use it (unreadable counters?)" if rapl_present
        else "/sys/class/powercap is absent (no RAPL counters: a container or a non-Intel/AMD-RAPL host)"
    )
    for hw in hardware:
        kind = type(hw).__name__
        if kind == "RAM":
            forced = getattr(hw, "_force_ram_power", None)
            out["ram"] = {
                "source": "estimated",
                "method": f"constant {forced} W (user)" if forced is not None else "constant-power RAM model",
                "explanation": "codecarbon estimates RAM power from installed memory (no RAM energy counter is read); "
                               "a constant power cancels out against the idle baseline",
            }
        elif kind == "CPU":
            mode = getattr(hw, "_mode", "?")
            tdp = getattr(hw, "_tdp", None)
            model = conf.get("cpu_model") or getattr(hw, "_model", None) or "unknown CPU"
            generic = " (generic default, model not in codecarbon's table)" if getattr(hw, "_is_generic_tdp", False) else ""
            if mode == "intel_rapl":
                out["cpu"] = {"source": "measured", "method": "RAPL energy counters",
                              "explanation": f"read from {RAPL_DIR} (package domains)"}
            elif mode == "windows_emi":
                out["cpu"] = {"source": "measured", "method": "Windows Energy Meter Interface",
                              "explanation": "RAPL counters read through Windows EMI"}
            elif mode == "intel_power_gadget":
                out["cpu"] = {"source": "measured", "method": "Intel Power Gadget",
                              "explanation": "RAPL power read through Intel Power Gadget"}
            elif mode == "cpu_load":
                tm = getattr(hw, "_tracking_mode", "machine")
                out["cpu"] = {"source": "estimated", "method": f"TDP x CPU load model ({tm})",
                              "explanation": f"{powercap_note}; codecarbon estimates CPU power as TDP {tdp} W{generic} "
                                             f"for '{model}' scaled by the {'process' if tm == 'process' else 'machine'} CPU load"}
            else:  # "constant"
                out["cpu"] = {"source": "estimated", "method": "constant CPU power",
                              "explanation": f"{powercap_note}; codecarbon assumes a constant share of TDP {tdp} W{generic}"}
        elif kind == "GPU":
            vendor = "AMD SMI" if "amd" in repr(getattr(hw, "devices", "")).lower() else "NVML"
            out["gpu"] = {"source": "measured", "method": f"{vendor} energy counters",
                          "explanation": f"GPU energy read by codecarbon through {vendor} ({conf.get('gpu_model') or 'GPU'})"}
        elif kind == "AppleSiliconChip":
            part = "gpu" if getattr(hw, "chip_part", "CPU") == "GPU" else "cpu"
            out[part] = {"source": "measured", "method": "Apple powermetrics", "explanation": "powermetrics (sudo) power samples"}
        elif kind == "Raspberry":
            part = "ram" if getattr(hw, "chip_part", "CPU") == "RAM" else "cpu"
            out[part] = {"source": "measured", "method": "Raspberry Pi PMIC", "explanation": "vcgencmd pmic_read_adc rails"}
    out.setdefault("cpu", {"source": "estimated", "method": "unknown", "explanation": "codecarbon reported no CPU tracker"})
    out.setdefault("ram", {"source": "estimated", "method": "unknown", "explanation": "codecarbon reported no RAM tracker"})
    return out


def _runner_for(artifact: Path, device, threads: int):
    kind = getattr(device, "kind", "cpu")
    if kind == "cpu":
        return load_runner(artifact, threads=threads, device="cpu")
    if kind == "cuda":
        return load_runner(artifact, threads=threads, device=device.name)
    raise EasrecError(f"{device.name}: energy is measured on cpu, cuda and android devices, not {kind}")


def measure_host_energy(
    artifact: str | Path,
    inputs: list[np.ndarray],
    device: Device,
    runs: int = 200,
    *,
    country_iso_code: str = "USA",
    threads: int = 1,
    warmup: int = 10,
    min_seconds: float = 2.0,
    measure_power_secs: float = 0.5,
    tracking_mode: str = "process",
) -> EnergyResult:
    """Joules per inference of `artifact` on `inputs` on this machine's CPU or GPU, per part, net of an idle baseline.

    `device`: a `cpu` or `cuda[:N]` device. `runs` inferences
    are timed as one window; when `runs` inferences would take less than `min_seconds`, the window is
    extended with more inferences (counted) so codecarbon takes at least a few samples. The idle
    baseline lasts the expected active duration (from the warm-up runs). `tracking_mode="process"`
    (default) makes codecarbon's load model attribute only this process's CPU time, which is what a
    shared machine needs; "machine" is the whole machine (for RAPL both read the same counters).
    """
    artifact = Path(artifact)
    runner = _runner_for(artifact, device, threads)
    prepared = runner.prepare(list(inputs))
    for _ in range(max(1, warmup)):
        runner.call(prepared)
    runner.synchronize()
    # Calibrate the time per inference (after warm-up) on at least 0.1 s of runs.
    calls, t0 = 0, time.perf_counter()
    while True:
        runner.call(prepared)
        calls += 1
        if calls >= 3 and time.perf_counter() - t0 >= 0.1:
            break
    runner.synchronize()
    per_run = (time.perf_counter() - t0) / calls
    n = max(runs, int(math.ceil(min_seconds / max(per_run, 1e-6)))) if min_seconds > 0 else runs
    expected = n * per_run
    gpu_ids = [getattr(device, "index", 0)] if getattr(device, "kind", None) == "cuda" else None

    _warm_codecarbon(country_iso_code, tracking_mode, gpu_ids)
    idle_tracker = _new_tracker(country_iso_code, measure_power_secs, tracking_mode, gpu_ids)
    idle_tracker.start()
    sources = describe_sources(idle_tracker)
    t_idle = time.perf_counter()
    time.sleep(expected)
    idle = _stop(idle_tracker, "the idle baseline")
    idle_seconds = time.perf_counter() - t_idle

    active_tracker = _new_tracker(country_iso_code, measure_power_secs, tracking_mode, gpu_ids)
    active_tracker.start()
    t_act = time.perf_counter()
    for _ in range(n):
        runner.call(prepared)
    runner.synchronize()
    active_seconds = time.perf_counter() - t_act
    active = _stop(active_tracker, f"{n} inferences of {artifact.name}")

    # codecarbon's own durations cover start() .. stop(); use them for power, ours for per-inference time.
    idle_dur = float(getattr(idle, "duration", 0.0) or idle_seconds)
    act_dur = float(getattr(active, "duration", 0.0) or active_seconds)
    parts: dict[str, PartEnergy] = {}
    for part in PARTS:
        e_act = float(getattr(active, f"{part}_energy", 0.0) or 0.0) * KWH_TO_J
        e_idle = float(getattr(idle, f"{part}_energy", 0.0) or 0.0) * KWH_TO_J
        p_idle = e_idle / idle_dur if idle_dur > 0 else 0.0
        p_act = e_act / act_dur if act_dur > 0 else 0.0
        raw = (e_act - p_idle * act_dur) / n
        src = dict(sources[part])
        if src["method"].startswith("constant"):
            # A constant-power model has no per-inference signal: whatever remains after the idle
            # subtraction is codecarbon's sampling artefact, so the net figure is 0 by construction.
            raw = 0.0
            src["explanation"] += "; net figure set to 0 (constant model), gross window energy kept"
        parts[part] = PartEnergy(
            joules_per_inference=max(0.0, raw), raw_joules_per_inference=raw, gross_joules=e_act,
            idle_joules=e_idle, active_power_w=p_act, idle_power_w=p_idle, **src,
        )
    total = sum(p.joules_per_inference for p in parts.values())
    # codecarbon's emissions ÷ energy is the carbon intensity it used (kg/kWh) for the country.
    co2 = None
    e_kwh = float(getattr(active, "energy_consumed", 0.0) or 0.0)
    if e_kwh > 0 and getattr(active, "emissions", None) is not None:
        co2 = float(active.emissions) / e_kwh * (total / KWH_TO_J)
    warnings = []
    if any(p.raw_joules_per_inference < 0 for p in parts.values() if p.source != "none"):
        warnings.append("a part used less power than in the idle baseline (noise): its net figure is clamped at 0")
    combined = combined_source(parts)
    if combined != "measured":
        warnings.append("estimated figures: " + "; ".join(f"{k}: {p.explanation}" for k, p in parts.items()
                                                           if p.source == "estimated"))
    s_per_inf = active_seconds / n
    return EnergyResult(
        artifact=str(artifact), device=device.name, runs=n, threads=threads, active_seconds=active_seconds,
        idle_seconds=idle_seconds, parts=parts, joules_per_inference=total, co2e_kg_per_inference=co2,
        country_iso_code=country_iso_code, source=combined, tool=f"codecarbon {_codecarbon_version()} (offline)",
        latency_ms_mean=1000.0 * s_per_inf, net_power_w=total / s_per_inf if s_per_inf > 0 else 0.0,
        warnings=warnings,
        extra={"requested_runs": runs, "tracking_mode": tracking_mode, "measure_power_secs": measure_power_secs,
               "codecarbon_duration_s": {"idle": idle_dur, "active": act_dur},
               "cpu_model": getattr(active, "cpu_model", None), "gpu_model": getattr(active, "gpu_model", None)},
    )
