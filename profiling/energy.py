"""Energy per inference of an exported artifact, and where every figure comes from.

CPU / GPU (``cpu``, ``cuda``): codecarbon's ``OfflineEmissionsTracker`` (never the online tracker,
which contacts the network) is run twice in this process: first around an idle window (the process
sleeps) whose length is the expected duration of the inferences, then around ``runs`` inferences
of the artifact. For each part (CPU, GPU, RAM)::

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

Each part also gets an ``explanation`` (why that source, e.g. "/sys/class/powercap is absent").

``android:SERIAL``: the battery's ``current_now`` and ``voltage_now`` (sysfs, read through adb with
the Android backend's own command builder) are sampled *on the phone* by one shell loop while
``executor_runner`` runs, and again during an idle window of the same length; J/inference =
(mean active power − mean idle power) × duration / runs. Conventions differ by vendor; see
`normalize_current_ua` and `normalize_voltage_uv`. The phone must run on battery (adb over Wi-Fi,
or charging disabled): while a charger is connected the battery current is the charger's, and the
result is flagged.

Energy LUT: `energy_lut` turns a latency LUT into an energy LUT (entries in mJ = measured average
net active power in W × LUT latency in ms), in the latency LUT's own file format so that the same
`LatencyTable` class reads it (see `energy_lut`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from easrec.errors import EasrecError
from easrec.io import atomic_write_json, package_version

log = logging.getLogger(__name__)

KWH_TO_J = 3.6e6
PARTS = ("cpu", "gpu", "ram")
RAPL_DIR = "/sys/class/powercap/intel-rapl"
BATTERY_DIR = "/sys/class/power_supply/battery"


# ------------------------------------------------------------------------------------ results

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
        return 1000.0 * self.joules_per_inference

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["parts"] = {k: v.to_dict() for k, v in self.parts.items()}
        d["mj_per_inference"] = self.millijoules_per_inference
        d["format"] = "easrec-energy/1"
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EnergyResult":
        data = {k: v for k, v in data.items() if k not in ("mj_per_inference", "format")}
        data["parts"] = {k: PartEnergy(**v) for k, v in data.get("parts", {}).items()}
        return cls(**data)


def _combined_source(parts: dict[str, PartEnergy]) -> str:
    sources = {p.source for p in parts.values() if p.source != "none"}
    if not sources:
        return "none"
    if sources == {"measured"}:
        return "measured"
    if sources == {"estimated"}:
        return "estimated"
    return "mixed"


# ------------------------------------------------------------------------------------ codecarbon

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
    from easrec.devices.runners import load_runner

    kind = getattr(device, "kind", "cpu")
    if kind == "cpu":
        return load_runner(artifact, threads=threads, device="cpu")
    if kind == "cuda":
        return load_runner(artifact, threads=threads, device=device.name)
    raise EasrecError(f"{device.name}: energy is measured on cpu, cuda and android devices, not {kind}")


def measure_energy(
    artifact: str | Path,
    inputs: list[np.ndarray],
    device: Any = "cpu",
    runs: int = 200,
    *,
    country_iso_code: str = "USA",
    threads: int = 1,
    warmup: int = 10,
    min_seconds: float = 2.0,
    measure_power_secs: float = 0.5,
    tracking_mode: str = "process",
) -> EnergyResult:
    """Joules per inference of `artifact` on `inputs`, per part, net of an idle baseline.

    `device`: a spec string or a `Device` (`cpu`, `cuda[:N]`, `android:SERIAL`). `runs` inferences
    are timed as one window; when `runs` inferences would take less than `min_seconds`, the window is
    extended with more inferences (counted) so codecarbon takes at least a few samples. The idle
    baseline lasts the expected active duration (from the warm-up runs). `tracking_mode="process"`
    (default) makes codecarbon's load model attribute only this process's CPU time, which is what a
    shared machine needs; "machine" is the whole machine (for RAPL both read the same counters).
    """
    from easrec.devices import get_device

    if isinstance(device, str):
        device = get_device(device)
    artifact = Path(artifact)
    if runs < 1:
        raise EasrecError(f"--runs: need at least 1 inference, got {runs}")
    if not artifact.is_file():
        raise EasrecError(f"{artifact}: no such artifact")
    if getattr(device, "kind", None) == "android":
        return measure_energy_android(artifact, inputs, device, runs, threads=threads)

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
    combined = _combined_source(parts)
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


# ------------------------------------------------------------------------------------ android

_STATUS = {"1": "unknown", "2": "charging", "3": "discharging", "4": "not charging", "5": "full"}


def parse_dumpsys_battery(text: str) -> dict[str, Any]:
    """`adb shell dumpsys battery` → {ac, usb, wireless, status, level, voltage_mv, temperature_c, plugged}.

    Lines look like ``  AC powered: false``, ``  status: 3`` (BatteryManager codes: 2 charging,
    3 discharging, 4 not charging, 5 full), ``  voltage: 4123`` (mV), ``  temperature: 285`` (0.1 °C).
    Some builds add ``current now: -312000`` (µA); it is returned when present.
    """
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition(":")
        if sep:
            fields[key.strip().lower()] = value.strip()

    def flag(name: str) -> bool | None:
        v = fields.get(name)
        return None if v is None else v.lower() == "true"

    def num(name: str) -> float | None:
        try:
            return float(fields[name])
        except (KeyError, ValueError):
            return None

    status = fields.get("status")
    out = {
        "ac": flag("ac powered"), "usb": flag("usb powered"), "wireless": flag("wireless powered"),
        "dock": flag("dock powered"),
        "status": _STATUS.get(status, status) if status is not None else None,
        "level": num("level"), "voltage_mv": num("voltage"),
        "temperature_c": None if num("temperature") is None else num("temperature") / 10.0,
        "current_now_ua": num("current now"),
    }
    out["plugged"] = any(bool(out[k]) for k in ("ac", "usb", "wireless", "dock"))
    return out


def normalize_current_ua(values: Iterable[float]) -> tuple[np.ndarray, dict[str, Any]]:
    """Battery current samples → discharge current in µA (positive = drawn from the battery).

    Conventions seen in the field: the kernel ABI says µA with positive = charging, so a phone on
    battery reads negative (Pixel, most AOSP); several vendors (Samsung, some Qualcomm/MediaTek
    builds) report positive while discharging; a few report mA instead of µA. Handling: if the
    median magnitude is below 10 000 the unit is taken as mA (a running phone draws ≥ 10 mA) and
    scaled; the sign is taken from the median sample so that the dominant direction is discharge
    (a phone running on battery discharges) and samples are multiplied by that sign.
    """
    arr = np.asarray(list(values), dtype=float)
    if arr.size == 0:
        raise EasrecError("battery: no current samples")
    info: dict[str, Any] = {"current_unit": "uA", "discharge_sign": -1}
    if np.median(np.abs(arr)) < 10_000:
        arr = arr * 1000.0
        info["current_unit"] = "mA"
    med = float(np.median(arr))
    sign = -1.0 if med < 0 else 1.0
    info["discharge_sign"] = int(sign)
    return arr * sign, info


def normalize_voltage_uv(values: Iterable[float]) -> tuple[np.ndarray, str]:
    """Battery voltage samples → µV (sysfs gives µV; some vendors mV, as `dumpsys battery` does)."""
    arr = np.asarray(list(values), dtype=float)
    if arr.size == 0:
        raise EasrecError("battery: no voltage samples")
    if np.median(arr) < 100_000:  # 4.2 V is 4 200 000 µV; 4200 is mV
        return arr * 1000.0, "mV"
    return arr, "uV"


_SAMPLE_RE = re.compile(r"^S\s+([0-9.]+)\s+(-?[0-9]+)\s+(-?[0-9]+)\s*$")


def parse_battery_samples(text: str) -> dict[str, Any]:
    """Parse the sampler's output (see `battery_sampler_script`): lines ``S <uptime s> <current> <voltage>``.

    Returns {"t": [s], "current_ua": [µA, discharge positive], "voltage_uv": [µV], "power_w": [W],
    "mean_power_w", "seconds", "n", "current_unit", "voltage_unit", "discharge_sign", "rc",
    "runner_output"}: the lines after ``RUNNER_OUTPUT`` are executor_runner's own log, ``RC n`` its
    exit status. Unparseable lines (a failed `cat`) are skipped; fewer than 2 samples is an error.
    """
    t, cur, volt = [], [], []
    rc = None
    runner_lines: list[str] = []
    in_runner = False
    for line in text.splitlines():
        if in_runner:
            runner_lines.append(line)
            continue
        s = line.strip()
        m = _SAMPLE_RE.match(s)
        if m:
            t.append(float(m.group(1)))
            cur.append(float(m.group(2)))
            volt.append(float(m.group(3)))
        elif s.startswith("RC "):
            try:
                rc = int(s.split()[1])
            except (IndexError, ValueError):
                pass
        elif s == "RUNNER_OUTPUT":
            in_runner = True
    if len(t) < 2:
        raise EasrecError(f"battery: found {len(t)} current/voltage samples, need at least 2 "
                          f"(is {BATTERY_DIR}/current_now readable on this phone?)")
    current, cinfo = normalize_current_ua(cur)
    voltage, vunit = normalize_voltage_uv(volt)
    power = current * 1e-6 * voltage * 1e-6
    return {
        "t": t, "current_ua": current.tolist(), "voltage_uv": voltage.tolist(), "power_w": power.tolist(),
        "mean_power_w": float(power.mean()), "seconds": float(t[-1] - t[0]), "n": len(t),
        "voltage_unit": vunit, **cinfo, "rc": rc, "runner_output": "\n".join(runner_lines),
    }


def battery_sampler_script(body: str, period_s: float = 0.1, battery_dir: str = BATTERY_DIR) -> str:
    """A phone-side shell line: run `body` in the background and sample the battery until it ends.

    Sampling on the phone (not one adb round trip per sample) keeps the period short and regular.
    Prints ``S <uptime> <current_now> <voltage_now>`` lines, then ``RC <exit status>``, then
    ``RUNNER_OUTPUT`` and the body's output.
    """
    cur, volt = f"{battery_dir}/current_now", f"{battery_dir}/voltage_now"
    return (
        f"( {body} ) > /data/local/tmp/easrec_energy.log 2>&1 & pid=$!; "
        f"while kill -0 $pid 2>/dev/null; do "
        f"echo \"S $(cut -d' ' -f1 /proc/uptime) $(cat {cur}) $(cat {volt})\"; sleep {period_s}; done; "
        f"wait $pid; echo \"RC $?\"; echo RUNNER_OUTPUT; cat /data/local/tmp/easrec_energy.log"
    )


def android_energy_from_samples(active: dict[str, Any], idle: dict[str, Any], runs: int,
                                active_seconds: float | None = None) -> PartEnergy:
    """Battery part: (mean active power − mean idle power) × duration / runs."""
    duration = active_seconds if active_seconds else active["seconds"]
    raw = (active["mean_power_w"] - idle["mean_power_w"]) * duration / runs
    return PartEnergy(
        joules_per_inference=max(0.0, raw), raw_joules_per_inference=raw,
        gross_joules=active["mean_power_w"] * duration, idle_joules=idle["mean_power_w"] * idle["seconds"],
        active_power_w=active["mean_power_w"], idle_power_w=idle["mean_power_w"], source="measured",
        method="battery current x voltage (sysfs)",
        explanation=f"{BATTERY_DIR}/current_now ({active['current_unit']}) x voltage_now ({active['voltage_unit']}) "
                    f"sampled on the phone, {active['n']} active / {idle['n']} idle samples; whole-phone power "
                    f"(screen, radios included) minus the idle window",
    )


def measure_energy_android(artifact: Path, inputs: list[np.ndarray], device, runs: int, *, threads: int = 1,
                           period_s: float = 0.1, min_seconds: float = 5.0) -> EnergyResult:
    """Battery power while executor_runner runs `runs` inferences, minus an idle window of the same length."""
    from easrec.devices import android

    artifact = Path(artifact)
    if artifact.suffix.lower() != ".pte":
        raise device.fail(f"measuring energy of {artifact.name}", "android measures ExecuTorch .pte artifacts only")
    battery = parse_dumpsys_battery(device._shell("reading battery", "dumpsys battery", timeout=30))
    warnings = []
    if battery["plugged"]:
        warnings.append("the phone is on a charger (dumpsys battery: powered): the battery current includes the "
                        "charger's, so these figures are not the inference's energy; unplug (adb over Wi-Fi)")
    runner = device.push_runner()
    model = device.push(artifact)
    remote_inputs = device.push_inputs(list(inputs))
    # A first run sizes the window: at least min_seconds, so the ~10 Hz sampling gets enough points.
    probe = device._run_once(runner, model, remote_inputs, 10, threads, artifact.name)
    per_run_s = max(1e-5, statistics.median(probe["iterations_ms"]) / 1000.0)
    n = max(runs, int(math.ceil(min_seconds / per_run_s)))
    body = device.runner_command(runner, model, remote_inputs, n, threads).replace(" 2>&1", "")
    out = device._adb(f"measuring energy of {artifact.name}", "shell", battery_sampler_script(body, period_s), check=False)
    active = parse_battery_samples(out.stdout or "")
    if active["rc"] not in (0, None):
        raise device.fail(f"running executor_runner on {artifact.name}", f"exit status {active['rc']}")
    parsed = android.parse_executor_runner_output(active["runner_output"], n)
    active_s = (parsed["total_ms"] / 1000.0) if parsed.get("total_ms") else active["seconds"]
    idle_out = device._adb("measuring idle battery power", "shell",
                           battery_sampler_script(f"sleep {max(active['seconds'], 1.0):.2f}", period_s), check=False)
    idle = parse_battery_samples(idle_out.stdout or "")
    part = android_energy_from_samples(active, idle, n, active_s)
    if part.raw_joules_per_inference < 0:
        warnings.append("active power was below idle power (noise): the net figure is clamped at 0")
    s_per_inf = active_s / n
    return EnergyResult(
        artifact=str(artifact), device=device.name, runs=n, threads=threads, active_seconds=active_s,
        idle_seconds=idle["seconds"], parts={"battery": part}, joules_per_inference=part.joules_per_inference,
        co2e_kg_per_inference=None, country_iso_code=None, source="measured", tool="android battery sysfs via adb",
        latency_ms_mean=1000.0 * s_per_inf, net_power_w=part.joules_per_inference / s_per_inf, warnings=warnings,
        extra={"battery": battery, "requested_runs": runs, "period_s": period_s,
               "current_unit": active["current_unit"], "discharge_sign": active["discharge_sign"]},
    )


# ------------------------------------------------------------------------------------ energy LUT

def energy_lut(latency_lut_path: str | Path, power_w: float | EnergyResult | dict | str | Path,
               out: str | Path) -> dict[str, Any]:
    """Write an energy LUT: every entry = measured average net active power (W) × LUT latency (ms) = mJ.

    `power_w`: watts, an `EnergyResult`, its dict, or an `energy.json` path (its `net_power_w`,
    i.e. net-of-idle J/inference ÷ s/inference measured on the same device). The file keeps the
    latency LUT's format 1 (see `easrec.profiling.lut`) so `LatencyTable.load` reads it unchanged:
    ``"unit": "mJ"``; each entry's `median_ms`/`p10_ms`/`p90_ms` hold **millijoules** (the field
    names are the LUT class's), with the latency kept as `latency_median_ms`; the affine
    correction keeps `a` and scales `b` by the power (energy = P·(a·Σ + b)); an ``energy`` section
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


def save_energy(result: EnergyResult, path: str | Path) -> None:
    """Write `result.to_dict()` as JSON (the `energy.json` that `easrec report` reads)."""
    atomic_write_json(path, result.to_dict())


def artifact_inputs(path: str | Path, threads: int = 1) -> list[np.ndarray]:
    """Realistic inputs for an artifact: from its sidecar (`FILE.json`: batch, max_len, popular items),
    a half-full left-padded history of popular items, as `easrec bench` builds; without a sidecar,
    int64 ids of 1 in the shape the runtime reports."""
    path = Path(path)
    from easrec.export.artifact import sidecar_path
    from easrec.export.bench import artifact_inputs as from_sidecar

    if sidecar_path(path).is_file():
        return from_sidecar(path)
    if path.suffix.lower() == ".pte" and not path.is_file():
        raise EasrecError(f"{path}: no such artifact")
    from easrec.devices.runners import load_runner

    runner = load_runner(path, threads=threads)
    specs = runner.input_specs
    if not specs or any(shape is None for _, shape in specs):
        raise EasrecError(f"{path}: no sidecar {path.name}.json and the runtime does not report fixed input shapes")
    return [np.ones(shape, dtype=dtype) for dtype, shape in specs]
