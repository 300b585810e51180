"""LUT accuracy on this CPU: build and validate latency tables for every runtime, one table of results.

For each config (default: ExecuTorch fp32, ExecuTorch int8, ONNX Runtime fp32, 1 thread) this builds
(or resumes) `benchmarks/results/lut_<space>_<runtime>_<dtype>.json` with the in-context method
(whole programs, `easrec.profiling.lut.build_lut`), validates it on `--subnets` random subnets (the
correction is chosen and scored by 5-fold cross-validation, so every subnet is held out once; ≥ 10
subnets are measured twice for the
test-retest noise floor), optionally rebuilds it once more from the lowered-graph cache
(`--rebuild-cached`: the build time when every graph is cached), and compares with the analytic FLOPs
model fitted the same way. Prints one table (within ±10 %, MAPE, Kendall τ, noise floor, build
seconds split into lowering and measuring, load average) and writes `benchmarks/results/lut_accuracy.json`.

    .venv/bin/python benchmarks/lut_accuracy.py --space quick --subnets 20            # the reduced space first
    .venv/bin/python benchmarks/lut_accuracy.py --space default --subnets 50 --configs executorch:fp32

`--space` is `quick` (the `easrec run --preset quick` space, its baseline as the extra architecture),
`default` (the default space, the reference SASRec as extra) or a search space JSON file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _space(name: str):
    from easrec.pipeline import PRESETS
    from easrec.space import Arch, SearchSpace, reference_arch

    if name == "default":
        return SearchSpace(), [reference_arch()]
    if name in PRESETS:
        preset = PRESETS[name]
        return SearchSpace.from_dict(preset.space), [Arch.from_dict(preset.baseline)]
    return SearchSpace.from_dict(json.loads(Path(name).read_text())), []


def _load(summary: dict | None) -> str:
    if not summary or not summary.get("available", True):
        return "n/a"
    return f"{summary['mean']:.1f} ({summary['min']:.1f}–{summary['max']:.1f})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="executorch:fp32,executorch:int8,onnxruntime:fp32")
    ap.add_argument("--space", default="quick", help="quick, default, or a search space JSON file")
    ap.add_argument("--subnets", type=int, default=20)
    ap.add_argument("--retest", type=int, default=None, help="subnets measured twice (default max(10, n/2))")
    ap.add_argument("--items", type=int, default=10000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-seconds", type=float, default=None, help="timed seconds per graph (default: the protocol's)")
    ap.add_argument("--rebuild-cached", action="store_true", help="also time a rebuild with every graph cached")
    ap.add_argument("--workers", type=int, default=None, help="lowering processes (default: one per core, at most 4)")
    ap.add_argument("--out", default=str(RESULTS / "lut_accuracy.json"))
    args = ap.parse_args(argv)

    from easrec.devices import get_device
    from easrec.profiling.lut import build_lut
    from easrec.profiling.protocol import LoadMonitor, Settings
    from easrec.profiling.validate import validate_lut

    space, extra = _space(args.space)
    space_name = args.space if args.space in ("quick", "default") else Path(args.space).stem
    device = get_device("cpu", threads=args.threads)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    report = json.loads(out.read_text()) if out.is_file() else {}
    if report.get("method") != "in-context-1":
        report = {}  # results of the per-component method are not comparable: start a new file
    report.update({"method": "in-context-1", "device": device.info(), "threads": args.threads,
                   "python": platform.python_version()})
    report.setdefault("runs", {})
    build_settings = Settings() if args.max_seconds is None else Settings(max_seconds=args.max_seconds)
    val_settings = Settings(max_seconds=3.0) if args.max_seconds is None else Settings(max_seconds=args.max_seconds)

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    for spec in args.configs.split(","):
        runtime, dtype = spec.split(":")
        name = f"{space_name}_{runtime}_{dtype}"
        lut_path = RESULTS / f"lut_{name}.json"
        monitor = LoadMonitor()
        log(f"{name}: building {lut_path} (load average {monitor.samples[0] if monitor.samples else float('nan'):.1f} "
            f"on {os.cpu_count()} cores)")
        last = [0.0]

        def progress(done: int, total: int, what: str) -> None:
            if time.perf_counter() - last[0] > 30 or done == total:
                last[0] = time.perf_counter()
                log(f"{name}: {done}/{total} {what}")

        t0 = time.perf_counter()
        table = build_lut(device, space, runtime, dtype, args.items, args.threads, lut_path, progress=progress,
                          settings=build_settings, extra=extra, workers=args.workers)
        build_wall = time.perf_counter() - t0
        timing = table.data["timing"]
        log(f"{name}: {len(table.data['programs'])} programs → {len(table.entries)} entries, build {table.data['build_seconds']:.0f} s "
            f"(lowering {timing['lowering_s']:.0f} s, measuring {timing['measuring_s']:.0f} s; this run {build_wall:.0f} s)")
        t0 = time.perf_counter()
        res = validate_lut(lut_path, device, args.subnets, progress=progress, settings=val_settings, retest=args.retest,
                           workers=args.workers)
        val_wall = time.perf_counter() - t0
        cached = None
        if args.rebuild_cached:
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                again = build_lut(device, space, runtime, dtype, args.items, args.threads, Path(tmp) / "lut.json",
                                  settings=build_settings, extra=extra)
                cached = {"seconds": time.perf_counter() - t0, "timing": again.data["timing"],
                          "load_average": again.data["load_average"].get("build")}
            log(f"{name}: rebuild with every graph cached: {cached['seconds']:.0f} s")
        subnets = res["subnets"]
        report["runs"][name] = {
            "space": space_name, "space_hash": space.hash(), "n_items": args.items, "runtime": runtime, "dtype": dtype,
            "lut_path": str(lut_path.relative_to(RESULTS.parent.parent)),
            "programs": len(table.data["programs"]), "entries": len(table.entries), "design": table.data.get("design"),
            "build_seconds": table.data["build_seconds"], "build_timing": timing,
            "build_sessions": len(table.data.get("sessions") or []),
            "build_load_average": table.data["load_average"].get("build"),
            "monotonicity": {k: table.data["monotonicity"].get(k) for k in ("initial_violations", "final_violations")},
            "validate_seconds": val_wall, "validate_timing": res["timing"], "validate_load_average": res["load_average"],
            "subnets": res["n_subnets"], "correction": res["corrections"]["chosen"],
            "lut": {"test": res["lut"]["test"], "all": res["lut"]["all"], "factors": res["lut"].get("factors"),
                    "a": res["lut"]["a"], "b": res["lut"]["b"]},
            "corrections": {k: v["test"] for k, v in res["corrections"]["candidates"].items()},
            "noise_floor": res["noise_floor"], "noise_floor_raw": res["noise_floor_raw"],
            "lut_vs_floor": res.get("lut_vs_floor"),
            "flops": {"test": res["flops"]["test"], "all": res["flops"]["all"]},
            "canary": res["canary"], "rebuild_cached": cached,
            "measured_ms_range": [min(r["measured_ms"] for r in subnets), max(r["measured_ms"] for r in subnets)],
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        out.write_text(json.dumps(report, indent=2) + "\n")
        log(f"{name}: validation done in {val_wall:.0f} s")

    print_table(report)
    print(f"written {out}")
    return 0


def print_table(report: dict) -> None:
    """The results table (cross-validated: every subnet held out once; noise floor = two measurements of one file within ±10 %)."""
    head = (f"{'config':28s} {'progs':>5s} {'build s (lower+meas)':>21s} {'cached s':>8s} {'val s':>6s} {'n':>3s} | "
            f"{'corr':8s} {'±10%':>5s} {'MAPE':>6s} {'τ':>5s} | {'floor ±10%':>10s} {'floor MAPE':>10s} | "
            f"{'FLOPs ±10%':>10s} {'MAPE':>6s} {'τ':>5s} | load build / val")
    print(head)
    print("-" * len(head))
    for name, c in report["runs"].items():
        lt, ft, fl = c["lut"]["test"], c["flops"]["test"], c.get("noise_floor") or {}
        bt = c["build_timing"]
        split = f"{c['build_seconds']:.0f} ({bt['lowering_s']:.0f}+{bt['measuring_s']:.0f})"
        cached = f"{c['rebuild_cached']['seconds']:.0f}" if c.get("rebuild_cached") else "–"
        floor = f"{100 * fl['within_10pct']:.0f}%" if fl else "–"
        floor_mape = f"{fl['mape_pct']:.1f}%" if fl else "–"
        print(f"{name:28s} {c['programs']:5d} {split:>21s} {cached:>8s} {c['validate_seconds']:6.0f} {lt['n']:3d} | "
              f"{c['correction']:8s} {100 * lt['within_10pct']:4.0f}% {lt['mape_pct']:5.1f}% {lt['kendall_tau']:5.2f} | "
              f"{floor:>10s} {floor_mape:>10s} | {100 * ft['within_10pct']:9.0f}% {ft['mape_pct']:5.1f}% {ft['kendall_tau']:5.2f} | "
              f"{_load(c.get('build_load_average'))} / {_load(c.get('validate_load_average'))}")
    dev = report.get("device") or {}
    print(f"(5-fold cross-validation, every subnet held out once; CPU {dev.get('cpu')}, {report.get('threads')} thread; load = 1-minute load "
          f"average mean (min–max) on {dev.get('cores')} cores)")


if __name__ == "__main__":
    sys.exit(main())
