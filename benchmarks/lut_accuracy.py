"""LUT accuracy on this CPU: build time of the default space's LUT and end-to-end validation vs FLOPs.

For executorch fp32, executorch int8 and onnxruntime fp32 at 1 thread (`--configs` to choose): builds
(or resumes) `benchmarks/results/lut_<runtime>_<dtype>.json` for the default search space, validates
it on `--subnets` random subnets (affine correction fitted on half, scored on the other half), and
compares with the analytic FLOPs model fitted the same way on the same subnets. Prints a table and
writes `benchmarks/results/lut_accuracy.json`.

    .venv/bin/python benchmarks/lut_accuracy.py [--subnets 50] [--items 10000] [--configs executorch:fp32,...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="executorch:fp32,executorch:int8,onnxruntime:fp32")
    ap.add_argument("--subnets", type=int, default=50)
    ap.add_argument("--items", type=int, default=10000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(RESULTS / "lut_accuracy.json"))
    args = ap.parse_args(argv)

    from easrec.devices import get_device
    from easrec.profiling.lut import build_lut
    from easrec.profiling.validate import validate_lut
    from easrec.space import SearchSpace

    space = SearchSpace()
    device = get_device("cpu", threads=args.threads)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    report = json.loads(out.read_text()) if out.is_file() else {}
    report.update({"device": device.info(), "space": space.to_dict(), "space_hash": space.hash(),
                   "n_items": args.items, "threads": args.threads, "subnets": args.subnets,
                   "command": " ".join([Path(sys.executable).name, *sys.argv])})
    report.setdefault("configs", {})

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    for spec in args.configs.split(","):
        runtime, dtype = spec.split(":")
        name = f"{runtime}_{dtype}"
        lut_path = RESULTS / f"lut_{name}.json"
        load0 = os.getloadavg()[0]
        log(f"{name}: building {lut_path} (load average {load0:.1f} on {os.cpu_count()} cores)")
        t0 = time.perf_counter()
        last = [0.0]

        def progress(done: int, total: int, what: str) -> None:
            if time.perf_counter() - last[0] > 30 or done == total:
                last[0] = time.perf_counter()
                log(f"{name}: {done}/{total} {what}")

        table = build_lut(device, space, runtime, dtype, args.items, args.threads, lut_path, progress=progress)
        build_wall = time.perf_counter() - t0
        log(f"{name}: {len(table.entries)} entries, build {table.data['build_seconds']:.0f} s (this run {build_wall:.0f} s)")
        t0 = time.perf_counter()
        res = validate_lut(lut_path, device, args.subnets, progress=progress)
        val_wall = time.perf_counter() - t0
        report["configs"][name] = {
            "runtime": runtime, "dtype": dtype, "lut_path": str(lut_path.relative_to(RESULTS.parent.parent)),
            "entries": len(table.entries), "build_seconds": table.data["build_seconds"],
            "build_canary": table.data.get("canary"), "validate_seconds": val_wall,
            "validation_canary": res["canary"],
            "lut": {"a": res["lut"]["a"], "b": res["lut"]["b"], "test": res["lut"]["test"], "all": res["lut"]["all"]},
            "flops": {"a": res["flops"]["a"], "b": res["flops"]["b"], "test": res["flops"]["test"], "all": res["flops"]["all"]},
"load_average": {"start": load0, "end": os.getloadavg()[0]},
            "measured_ms_range": [min(r["measured_ms"] for r in res["subnets"]), max(r["measured_ms"] for r in res["subnets"])],
        }
        out.write_text(json.dumps(report, indent=2) + "\n")
        log(f"{name}: validation done in {val_wall:.0f} s")

    header = f"{'config':18s} {'build s':>8s} {'n':>3s} | {'LUT ±10%':>8s} {'MAPE':>6s} {'τ':>6s} | {'FLOPs ±10%':>10s} {'MAPE':>6s} {'τ':>6s}"
    print(header)
    print("-" * len(header))
    for name, c in report["configs"].items():
        lt, ft = c["lut"]["test"], c["flops"]["test"]
        print(f"{name:18s} {c['build_seconds']:8.0f} {lt['n']:3d} | {100 * lt['within_10pct']:7.0f}% {lt['mape_pct']:5.1f}% {lt['kendall_tau']:6.3f} | "
              f"{100 * ft['within_10pct']:9.0f}% {ft['mape_pct']:5.1f}% {ft['kendall_tau']:6.3f}")
    print(f"(scores on the held-out half; CPU {report['device'].get('cpu')}, {args.threads} thread, python {platform.python_version()})")
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
