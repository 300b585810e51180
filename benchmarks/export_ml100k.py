"""Export benchmark on ml-100k: every format × precision, batch 1, 1 thread, all timed in one run.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/export_ml100k.py --run runs/bench_export_model \\
        --out-dir runs/bench_export [--rounds 50]

`--run` is a trained run (`easrec train ml-100k --max-len 200 --d 64 --layers 2 --heads 2 --ffn 256 --out RUN`);
without it the reference SASRec is trained here first. Every variant is exported with
`easrec.export.export_run` (parity on the full test split, in the artifact's own runtime). Then all
artifacts are loaded side by side and timed in `--rounds` interleaved rounds (each round runs every
artifact `--runs-per-round` times, in a new random order), on the same real test history, so that
ratios between variants are measured under the same load; the 1-minute load average is sampled
throughout and stored. ExecuTorch artifacts are also profiled per op (ETDump, XNNPACK op events),
which shows where int8 gains or loses time. Writes benchmarks/results/export_ml100k.json.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]

# (name, format, quantize, int8 recipe, embedding bits, suffix)
VARIANTS = [
    ("pte fp32", "executorch", "none", "small", 8, ".pte"),
    ("pte int8 (small)", "executorch", "int8", "small", 8, ".pte"),
    ("pte int8 (small, int4 table)", "executorch", "int8", "small", 4, ".pte"),
    ("pte int8 (fast)", "executorch", "int8", "fast", 8, ".pte"),
    ("pte int8-static (small)", "executorch", "int8-static", "small", 8, ".pte"),
    ("onnx fp32", "onnx", "none", "small", 8, ".onnx"),
    ("onnx int8", "onnx", "int8", "small", 8, ".onnx"),
    ("onnx int8-static", "onnx", "int8-static", "small", 8, ".onnx"),
    ("pt2 fp32 (torch)", "pt2", "none", "small", 8, ".pt2"),
]


def train_run(path: Path) -> Path:
    """Train the reference SASRec on ml-100k with `easrec train` defaults (early stopping)."""
    from easrec.cli import main as cli

    code = cli(["train", "ml-100k", "--max-len", "200", "--d", "64", "--layers", "2", "--heads", "2", "--ffn", "256",
                "--threads", "1", "--out", str(path)])
    if code:
        raise SystemExit(f"training failed ({code})")
    return path


def etdump_ops(path: Path, ids: np.ndarray, runs: int = 200) -> dict[str, float]:
    """p10 µs per op event of one execution, summed by event name (XNNPACK ops and CPU kernels)."""
    import executorch.kernels.quantized  # noqa: F401
    from executorch.devtools import Inspector
    from executorch.runtime import Runtime

    prog = Runtime.get().load_program(str(path), enable_etdump=True, debug_buffer_size=0)
    method = prog.load_method("forward")
    x = torch.from_numpy(np.ascontiguousarray(ids))
    for _ in range(runs):
        method.execute([x])
    dump = str(path) + ".etdp"
    prog.write_etdump_result_to_file(dump, "")
    out: dict[str, float] = collections.defaultdict(float)
    for block in Inspector(etdump_path=dump).event_blocks:
        if block.name != "Execute":
            continue
        for ev in block.events:
            if ev.perf_data is None or ev.name in ("Method::execute", "DELEGATE_CALL", "OPERATOR_CALL"):
                continue
            name = ev.name.split(" #")[0].replace("native_call_", "")
            out[name] += float(np.percentile(ev.perf_data.raw, 10)) * 1000
    os.remove(dump)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


GEMMS = [(200, 64, 64), (200, 64, 256), (200, 256, 64), (1, 64, 256), (1, 64, 1683)]  # (rows, in, out) of SASRec's linears


def gemm_micro(out_dir: Path) -> list[dict]:
    """One linear per shape SASRec runs, lowered fp32 / int8 dynamic / int8 static through the same
    `lower_file`, and XNNPACK's own op time (ETDump p10, µs): where int8 wins and where it loses."""
    from easrec.export.lowering import lower_file

    rows = []
    for m, k, n in GEMMS:
        torch.manual_seed(0)
        lin = torch.nn.Sequential(torch.nn.Linear(k, n)).eval()
        x = torch.randn(1, m, k)
        row = {"rows": m, "in": k, "out": n}
        for dtype in ("fp32", "int8", "int8-static"):
            path = out_dir / f"gemm_{m}x{k}x{n}_{dtype}.pte"
            calib = [(torch.randn(1, m, k),) for _ in range(8)]
            lower_file(lin, (x,), path, "executorch", dtype, calibration=calib)
            ops = etdump_ops(path, x.numpy(), runs=300)
            row[dtype] = sum(v for name, v in ops.items() if name.startswith("Fully Connected"))
        rows.append(row)
    return rows


def main() -> None:
    from easrec.devices.runners import load_runner
    from easrec.export import export_run
    from easrec.train.checkpoint import load_model, load_run_dataset, read_json

    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, default=None)
    ap.add_argument("--out-dir", type=Path, default=None)
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--runs-per-round", type=int, default=20)
    ap.add_argument("--json-out", type=Path, default=ROOT / "benchmarks/results/export_ml100k.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    out_dir = args.out_dir or Path(tempfile.mkdtemp(prefix="easrec-export-bench-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    run = args.run or train_run(out_dir / "run")
    model = load_model(run)
    ds = load_run_dataset(run)
    L = model.arch.max_len
    test_x, _ = ds.split().eval_arrays("test", L)
    ids = test_x[np.argmax((test_x != 0).sum(1))][None].copy()  # the longest real test history
    loads = [os.getloadavg()[0]]

    exports = {}
    for name, fmt, quant, recipe, bits, suffix in VARIANTS:
        t0 = time.perf_counter()
        file = out_dir / (name.replace(" ", "_").replace("(", "").replace(")", "").replace(",", "") + suffix)
        try:
            exports[name] = export_run(run, fmt=fmt, quantize=quant, out=file, int8_recipe=recipe, embedding_bits=bits)
        except Exception as exc:  # report, keep going
            exports[name] = {"error": f"{type(exc).__name__}: {exc}"}
        loads.append(os.getloadavg()[0])
        print(f"exported {name} in {time.perf_counter() - t0:.1f}s", flush=True)

    runners = {n: load_runner(r["export"]["path"], threads=1) for n, r in exports.items() if "error" not in r}
    prepared = {n: r.prepare([ids]) for n, r in runners.items()}
    for n, r in runners.items():  # warm-up
        for _ in range(20):
            r.call(prepared[n])
    times: dict[str, list[float]] = {n: [] for n in runners}
    rng = random.Random(0)
    t_start = time.time()
    for _ in range(args.rounds):
        order = list(runners)
        rng.shuffle(order)
        for n in order:
            r, p = runners[n], prepared[n]
            for _ in range(args.runs_per_round):
                t0 = time.perf_counter()
                r.call(p)
                times[n].append((time.perf_counter() - t0) * 1e3)
        loads.append(os.getloadavg()[0])
    timing_s = time.time() - t_start

    eager = next((e["parity"]["eager_metrics"] for e in exports.values() if "parity" in e), {})
    rows = {}
    for name, rep in exports.items():
        if "error" in rep:
            rows[name] = rep
            continue
        t = np.asarray(times[name])
        par = rep["parity"]
        rows[name] = {
            "format": rep["export"]["format"], "quantize": rep["export"]["quantize"],
            "size_bytes": rep["export"]["size_bytes"], "median_ms": float(np.median(t)), "p10_ms": float(np.percentile(t, 10)),
            "p90_ms": float(np.percentile(t, 90)), "runs": len(t), "ndcg@10": par["artifact_metrics"]["ndcg@10"],
            "hr@10": par["artifact_metrics"]["hr@10"], "max_abs_diff": par["max_abs_diff"], "top10_overlap": par["top10_overlap"],
            "parity_passed": par["passed"], "runtime": par["runtime"],
            "quantization": rep["export"]["report"].get("quantization", {}),
        }
    base = {"executorch": rows.get("pte fp32"), "onnx": rows.get("onnx fp32"), "pt2": rows.get("pte fp32")}
    for name, row in rows.items():
        if "median_ms" not in row:
            continue
        ref = base.get(row["format"]) or {}
        if "median_ms" in ref:
            row["size_vs_fp32"] = row["size_bytes"] / ref["size_bytes"]
            row["median_vs_fp32"] = row["median_ms"] / ref["median_ms"]
            row["p10_vs_fp32"] = row["p10_ms"] / ref["p10_ms"]
        if eager.get("ndcg@10"):
            row["ndcg_vs_fp32"] = row["ndcg@10"] / eager["ndcg@10"] - 1

    per_op = {}
    for name, rep in exports.items():
        if "error" not in rep and rep["export"]["format"] == "executorch":
            try:
                per_op[name] = etdump_ops(Path(rep["export"]["path"]), ids)
            except Exception as exc:  # devtools missing: the table above still stands
                per_op[name] = {"error": str(exc)}

    gemms = gemm_micro(out_dir)
    i8s, i8f = rows.get("pte int8 (small)", {}), rows.get("pte int8 (fast)", {})
    statics = [r for n, r in rows.items() if "static" in n and "ndcg_vs_fp32" in r]
    int8s = [r for n, r in rows.items() if "int8" in n and "ndcg_vs_fp32" in r]
    goals = {
        "pte int8 (small) size <= 1/3 fp32": i8s.get("size_vs_fp32", 9) <= 1 / 3,
        "pte int8 (small) median and p10 <= fp32": i8s.get("median_vs_fp32", 9) <= 1 and i8s.get("p10_vs_fp32", 9) <= 1,
        "pte int8 (fast) median and p10 <= fp32": i8f.get("median_vs_fp32", 9) <= 1 and i8f.get("p10_vs_fp32", 9) <= 1,
        "every int8 within 2 % NDCG@10": all(r["ndcg_vs_fp32"] >= -0.02 for r in int8s),
        "every static int8 within 2 % NDCG@10": all(r["ndcg_vs_fp32"] >= -0.02 for r in statics),
    }
    meta = read_json(Path(run) / "metrics.json", "metrics") if (Path(run) / "metrics.json").is_file() else {}
    result = {
        "run": str(run), "arch": model.arch.to_dict(), "n_items": model.n_items, "batch": 1, "threads": 1,
        "eager": eager, "run_test_metrics": meta.get("test", {}), "rows": rows, "per_op_us": per_op, "gemm_us": gemms,
        "timing": {"rounds": args.rounds, "runs_per_round": args.runs_per_round, "seconds": timing_s,
                   "input_nonpadded": int((ids != 0).sum())},
        "load_average_1min": {"samples": loads, "min": min(loads), "max": max(loads), "mean": float(np.mean(loads)),
                              "cores": os.cpu_count()},
        "goals": goals, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(result, indent=2) + "\n")

    print(f"\nml-100k SASRec {model.arch.describe()}, {model.n_items} items, batch 1, 1 thread; "
          f"load average {min(loads):.1f}–{max(loads):.1f} on {os.cpu_count()} cores")
    print("| variant | size KiB | size / fp32 | median ms | p10 ms | median / fp32 | p10 / fp32 | NDCG@10 | Δ vs fp32 | parity |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(f"| eager fp32 (torch) | – | – | – | – | – | – | {eager.get('ndcg@10', float('nan')):.4f} | – | – |")
    for name, row in rows.items():
        if "median_ms" not in row:
            print(f"| {name} | FAILED: {row.get('error')} |")
            continue
        print(f"| {name} | {row['size_bytes'] / 1024:.0f} | {row.get('size_vs_fp32', float('nan')):.2f} | {row['median_ms']:.3f} | "
              f"{row['p10_ms']:.3f} | {row.get('median_vs_fp32', float('nan')):.3f} | {row.get('p10_vs_fp32', float('nan')):.3f} | "
              f"{row['ndcg@10']:.4f} | {row.get('ndcg_vs_fp32', 0):+.1%} | {'pass' if row['parity_passed'] else 'FAIL'} |")
    print("\nper-op p10 µs (ETDump, one execution):")
    for name, ops in per_op.items():
        print(f"  {name}: " + ", ".join(f"{k} {v:.0f}" for k, v in list(ops.items())[:10]))
    print("\nXNNPACK linear alone, ETDump p10 µs (rows × in → out): fp32 / int8 dynamic / int8 static")
    for g in gemms:
        print(f"  {g['rows']} × {g['in']} → {g['out']}: {g['fp32']:.0f} / {g['int8']:.0f} / {g['int8-static']:.0f}")
    print(f"goals: {json.dumps(goals)}")
    print(f"wrote {args.json_out}")


if __name__ == "__main__":
    main()
