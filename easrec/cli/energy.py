"""`easrec energy FILE --device cpu`: joules per inference of an exported artifact, and how they were obtained."""

from __future__ import annotations

import argparse

from easrec.cli.common import add_json_flag, emit
from easrec.cli.devices import add_device_args, device_from_args, device_threads
from easrec.cli.types import nonneg_float, positive_int
from easrec.errors import EasrecError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `energy` command."""
    p = subparsers.add_parser(
        "energy", help="joules per inference of an exported artifact, measured or estimated (says which)",
        description="Energy per inference of FILE (.pte/.onnx/.pt2) on a device, net of an idle baseline of the same "
                    "length. cpu/cuda: codecarbon's offline tracker (RAPL/NVML when present: 'measured'; otherwise "
                    "its TDP model: 'estimated'). android:SERIAL: battery current x voltage sampled through adb.")
    p.add_argument("artifact", metavar="FILE", help="exported artifact (inputs come from FILE.json when present)")
    p.add_argument("--runs", type=positive_int, default=200, help="inferences in the measured window (extended to at least "
                                                         "--min-seconds; default 200)")
    p.add_argument("--country", default="USA", help="ISO 3166 alpha-3 code for codecarbon's carbon intensity (default USA)")
    p.add_argument("--min-seconds", type=nonneg_float, default=2.0, help="shortest measured window in seconds (default 2)")
    p.add_argument("--out", help="also write the result as JSON here (e.g. RUN/energy.json for `easrec report`)")
    add_device_args(p, device_help="cpu, cpu:N, cuda[:N], android:SERIAL (default cpu; ssh boards have no energy reading)")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> dict:
    """Measure; JSON: `EnergyResult.to_dict()` (parts cpu/gpu/ram or battery, each with source and explanation)."""
    from easrec.io import ensure_writable
    from easrec.profiling.energy import artifact_inputs, measure_energy, save_energy

    if args.out:
        ensure_writable(args.out, directory=False)
    if args.runs < 1:
        raise EasrecError(f"--runs must be >= 1, got {args.runs}")
    device = device_from_args(args, kinds=("cpu", "cuda", "android"), what="energy")
    threads = device_threads(device)
    inputs = artifact_inputs(args.artifact, threads=threads)
    result = measure_energy(args.artifact, inputs, device, args.runs, country_iso_code=args.country,
                            threads=threads, min_seconds=args.min_seconds)
    if args.out:
        save_energy(result, args.out)
    data = result.to_dict()
    rows = [("artifact", result.artifact), ("device", result.device),
            ("inferences", f"{result.runs} in {result.active_seconds:.2f} s ({result.latency_ms_mean:.3f} ms each)")]
    for name, part in result.parts.items():
        if part.source == "none":
            rows.append((name, f"- (none: {part.explanation})"))
            continue
        rows.append((name, f"{part.joules_per_inference * 1000:.4g} mJ/inference  ({part.source}: {part.method})"))
    rows.append(("total", f"{result.millijoules_per_inference:.4g} mJ/inference  ({result.source})"))
    if result.co2e_kg_per_inference is not None:
        rows.append(("CO2e", f"{result.co2e_kg_per_inference * 1e6:.4g} mg/inference ({result.country_iso_code})"))
    rows.append(("tool", result.tool))
    for w in result.warnings:
        rows.append(("note", w))
    if args.out:
        rows.append(("written", args.out))
    from rich.markup import escape

    rows = [(k, escape(str(v))) for k, v in rows]
    return emit(args, data, title=f"energy per inference on {result.device}", rows=rows)
