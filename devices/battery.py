"""An Android phone's battery as an energy meter: the sampler run on the phone and the parsing of its output.

The battery's ``current_now`` and ``voltage_now`` (sysfs) are sampled *on the phone* by one shell loop
(`battery_sampler_script`) while the runner runs, and again during an idle window of the same length;
J/inference = (mean active power − mean idle power) × duration / runs (`android_energy_from_samples`).
Conventions differ by vendor; see `normalize_current_ua` and `normalize_voltage_uv`. The phone must
run on battery (adb over Wi-Fi, or charging disabled): while a charger is connected the battery
current is the charger's (`parse_dumpsys_battery` says whether it is plugged).
"""

from __future__ import annotations

import re
from typing import Any, Iterable

import numpy as np

from easrec.devices.energy import PartEnergy
from easrec.errors import EasrecError

BATTERY_DIR = "/sys/class/power_supply/battery"

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
    "runner_output"}: the lines after ``RUNNER_OUTPUT`` are the runner's own log (easrec_runner), ``RC n`` its
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
