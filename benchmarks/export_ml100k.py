"""Export benchmark on ml-100k: eager fp32 vs .pte fp32 / int8 and ONNX fp32 / int8, batch 1, 1 thread.

    .venv/bin/python benchmarks/export_ml100k.py [--run RUN] [--epochs 30] [--out-dir DIR]

Trains (or loads `--run`) the reference SASRec (L 200, d 64, 2 layers, 2 heads of 32, FFN 256) on
ml-100k, exports every variant with `easrec.export.export_run` (parity on the full test split, in
the artifact's own runtime), then times everything in this one process with the same protocol
(`easrec.devices` CPU device: 10 warm-ups, timed runs until the median is stable, 1 thread) on the
same real test sequence. Also times eager full computation vs the last-position rewrite, and the
in-graph exclusion of seen items. Writes benchmarks/results/export_ml100k.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def train_run(path: Path, epochs: int, seed: int = 0) -> Path:
    from easrec.data import load_dataset
    from easrec.export.parity import eager_scores, topk_metrics
    from easrec.model import SASRec
    from easrec.space import reference_arch
    from easrec.train.checkpoint import save_model, write_json

    torch.manual_seed(seed)
    spec = "ml-100k"
    ds = load_dataset(spec)
    arch = reference_arch()
    model = SASRec(arch, ds.n_items, dropout=0.2)
    split = ds.split()
    x, y = (torch.from_numpy(a) for a in split.train_arrays(arch.max_len))
    vx, vy = split.eval_arrays("valid", arch.max_len)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(seed)
    best, best_state = -1.0, None
    for epoch in range(epochs):
        model.train()
        t0 = time.perf_counter()
        for idx in torch.randperm(len(x), generator=gen).split(128):
            opt.zero_grad()
            model.loss(x[idx], y[idx]).backward()
            opt.step()
        model.eval()
        items = np.argsort(-eager_scores(model, vx), axis=1)[:, :10]
        ndcg = topk_metrics(items, vy)["ndcg@10"]
        print(f"epoch {epoch + 1}: {time.perf_counter() - t0:.1f}s valid NDCG@10 {ndcg:.4f}", flush=True)
        if ndcg > best:
            best, best_state = ndcg, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    model.eval()
    path.mkdir(parents=True, exist_ok=True)
    save_model(model, path / "model.pt")
    write_json(path / "config.json", {"data": {"spec": spec, "options": {}}, "arch": arch.to_dict()})
    write_json(path / "mapping.json", ds.mapping())
    write_json(path / "metrics.json", {"valid": {"ndcg@10": best}, "test": {}, "protocol": "full", "arch": arch.to_dict()})
    return path


def main() -> None:
    from easrec.devices import get_device
    from easrec.devices.timing import time_callable
    from easrec.export import TopKGraph, export_run
    from easrec.train.checkpoint import load_model, load_run_dataset

    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, default=None)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--out-dir", type=Path, default=None)
    ap.add_argument("--json-out", type=Path, default=ROOT / "benchmarks/results/export_ml100k.json")
    args = ap.parse_args()
    out_dir = args.out_dir or Path(tempfile.mkdtemp(prefix="easrec-export-bench-"))
    run = args.run or train_run(out_dir / "run", args.epochs)
    model = load_model(run)
    ds = load_run_dataset(run)
    L = model.arch.max_len
    test_x, _ = ds.split().eval_arrays("test", L)
    # the timed input: a real test history (the longest one, padding where it is shorter than L)
    ids = test_x[np.argmax((test_x != 0).sum(1))][None].copy()

    variants = [("pte_fp32", "executorch", "none", ".pte"), ("pte_int8", "executorch", "int8", ".pte"),
                ("pte_int8_static", "executorch", "int8-static", ".pte"),
                ("onnx_fp32", "onnx", "none", ".onnx"), ("onnx_int8", "onnx", "int8", ".onnx"),
                ("onnx_int8_static", "onnx", "int8-static", ".onnx")]
    exports = {}
    for name, fmt, quant, suffix in variants:
        t0 = time.perf_counter()
        try:
            exports[name] = export_run(run, fmt=fmt, quantize=quant, out=out_dir / f"{name}{suffix}")
        except Exception as exc:  # report, keep going
            exports[name] = {"error": f"{type(exc).__name__}: {exc}"}
        print(f"exported {name} in {time.perf_counter() - t0:.1f}s", flush=True)

    torch.set_num_threads(1)
    graph = TopKGraph(model, k=10).eval()
    graph_noex = TopKGraph(model, k=10, exclude_seen=False).eval()
    t = torch.from_numpy(ids)
    with torch.inference_mode():
        eager = {
            "eager_fp32": time_callable(lambda: graph(t), warmup=10, min_runs=100, max_runs=300),
            "eager_fp32_no_exclusion": time_callable(lambda: graph_noex(t), warmup=10, min_runs=100, max_runs=300),
            "eager_full": time_callable(lambda: torch.topk(model.score(model.encode(t, last_only=False)[:, -1]), 10), warmup=10, min_runs=100, max_runs=300),
            "eager_last": time_callable(lambda: torch.topk(model.score(model.encode(t, last_only=True)), 10), warmup=10, min_runs=100, max_runs=300),
        }
    device = get_device("cpu", threads=1)
    rows = {}
    eager_ms = eager["eager_fp32"].median_ms
    size_eager = (Path(run) / "model.pt").stat().st_size
    par0 = next((e["parity"] for e in exports.values() if "parity" in e), {})
    rows["eager_fp32"] = {"median_ms": eager_ms, "p10_ms": eager["eager_fp32"].p10_ms, "p90_ms": eager["eager_fp32"].p90_ms,
                          "size_bytes": size_eager, "ndcg@10": par0.get("eager_metrics", {}).get("ndcg@10"),
                          "hr@10": par0.get("eager_metrics", {}).get("hr@10"), "runtime": f"torch {torch.__version__}"}
    for name, rep in exports.items():
        if "error" in rep:
            rows[name] = rep
            continue
        path = Path(rep["export"]["path"])
        stats = device.measure(path, [ids], threads=1, warmup=10, min_runs=100, max_runs=300)
        par = rep["parity"]
        rows[name] = {"median_ms": stats.median_ms, "p10_ms": stats.p10_ms, "p90_ms": stats.p90_ms, "load_ms": stats.load_ms,
                      "size_bytes": path.stat().st_size, "ndcg@10": par["artifact_metrics"]["ndcg@10"],
                      "hr@10": par["artifact_metrics"]["hr@10"], "max_abs_diff": par["max_abs_diff"],
                      "top10_overlap": par["top10_overlap"], "parity_passed": par["passed"], "runtime": par["runtime"]}
        if rep["export"]["format"] == "executorch":
            r = rep["export"]["report"]
            rows[name]["delegation"] = {"delegated_nodes": r["delegated_nodes"], "cpu_nodes": r["non_delegated_nodes"], "cpu_ops": r["cpu_ops"]}
    for name, row in rows.items():
        if "median_ms" in row:
            row["speedup_vs_eager"] = eager_ms / row["median_ms"]
            row["size_ratio_vs_eager"] = row["size_bytes"] / size_eager
            if row.get("ndcg@10") is not None and rows["eager_fp32"]["ndcg@10"]:
                row["ndcg_rel_change"] = row["ndcg@10"] / rows["eager_fp32"]["ndcg@10"] - 1
    last = {"full_ms": eager["eager_full"].median_ms, "last_position_ms": eager["eager_last"].median_ms,
            "speedup": eager["eager_full"].median_ms / eager["eager_last"].median_ms}
    excl = {"with_ms": eager_ms, "without_ms": eager["eager_fp32_no_exclusion"].median_ms}
    info = device.info()
    result = {"arch": model.arch.to_dict(), "n_items": model.n_items, "max_len": L, "batch": 1, "threads": 1,
              "device": {k: info.get(k) for k in ("cpu", "cores", "usable_cores", "os", "machine", "python")},
              "run": str(run), "rows": rows, "last_position": last, "in_graph_exclusion": excl,
              "goals": {
                  "pte_int8_speedup>=2": rows.get("pte_int8", {}).get("speedup_vs_eager", 0) >= 2,
                  "pte_int8_size<=1/3": rows.get("pte_int8", {}).get("size_ratio_vs_eager", 1) <= 1 / 3,
                  "pte_int8_ndcg_within_2pct": rows.get("pte_int8", {}).get("ndcg_rel_change", -1) >= -0.02,
                  "last_position_speedup>=1.5": last["speedup"] >= 1.5}}
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nml-100k SASRec {model.arch.describe()}, batch 1, 1 thread, {info.get('cpu')}")
    print(f"{'variant':18} {'median ms':>10} {'p10':>8} {'p90':>8} {'x eager':>8} {'size KiB':>9} {'size/eager':>10} {'NDCG@10':>8} {'dNDCG':>7}")
    for name, row in rows.items():
        if "median_ms" not in row:
            print(f"{name:18} FAILED: {row.get('error')}")
            continue
        print(f"{name:18} {row['median_ms']:10.3f} {row['p10_ms']:8.3f} {row['p90_ms']:8.3f} {row['speedup_vs_eager']:8.2f} "
              f"{row['size_bytes'] / 1024:9.1f} {row['size_ratio_vs_eager']:10.2f} {row['ndcg@10'] or float('nan'):8.4f} "
              f"{row.get('ndcg_rel_change', 0):+7.1%}")
    print(f"eager full {last['full_ms']:.3f} ms vs last-position {last['last_position_ms']:.3f} ms: {last['speedup']:.2f}x")
    print(f"eager with in-graph exclusion {excl['with_ms']:.3f} ms, without {excl['without_ms']:.3f} ms")
    print(f"goals: {result['goals']}")
    print(f"wrote {args.json_out}")


if __name__ == "__main__":
    main()
