"""`easrec export`, `easrec predict`, `easrec bench`: ship a model, ask it, time it."""

from __future__ import annotations

import argparse
import sys

from easrec.cli.common import add_json_flag, emit
from easrec.cli.devices import add_device_args, device_from_args, device_threads
from easrec.cli.types import nonneg_int, positive_int
from easrec.errors import EasrecError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `export`, `predict` and `bench` commands."""
    exp = subparsers.add_parser("export", help="export a run's model to ExecuTorch (.pte), ONNX or torch.export (.pt2), with parity checks")
    exp.add_argument("run", metavar="RUN", help="run directory (model.pt, config.json, mapping.json)")
    exp.add_argument("--format", dest="fmt", choices=["executorch", "onnx", "pt2"], required=True,
                     help="pt2: a torch.export package (fp32) that torch runs on CPU or CUDA")
    exp.add_argument("--quantize", choices=["none", "int8", "int8-static"], default="none")
    exp.add_argument("--int8-recipe", choices=["small", "fast"], default="small",
                     help="executorch int8: 'small' quantizes every linear, the item table and computes the causal "
                          "mask (about 0.3x the fp32 file); 'fast' quantizes only what int8 runs faster (the catalogue "
                          "scoring) and keeps the rest fp32 (the sidecar lists what and why)")
    exp.add_argument("--embedding-bits", type=int, choices=[8, 4], default=8,
                     help="executorch int8 'small': bits per value of the quantized item table (default 8)")
    exp.add_argument("--out", required=True, metavar="FILE", help="artifact path (.pte, .onnx or .pt2); FILE.json is written beside it")
    exp.add_argument("--k", type=positive_int, default=10, help="top-k computed in the graph (default 10)")
    exp.add_argument("--batch", type=positive_int, default=1, help="fixed batch size of the graph (default 1)")
    exp.add_argument("--allow-drop", action="store_true", help="exit 0 even when int8 NDCG@10 drops more than 2%% below fp32")
    exp.add_argument("--no-parity", action="store_true", help="skip the parity check on the test split")
    add_json_flag(exp)
    exp.set_defaults(func=export_command)

    pred = subparsers.add_parser("predict", help="top-k next items for a history of raw item ids")
    pred.add_argument("artifact", metavar="FILE", help="exported .pte, .onnx or .pt2 (with FILE.json)")
    pred.add_argument("--history", default="", help="comma-separated raw item ids, oldest first (empty: most popular)")
    pred.add_argument("--k", type=positive_int, default=None, help="how many items (at most the exported k)")
    pred.add_argument("--skip-unknown", action="store_true",
                      help="drop history ids the artifact does not know (reported once) instead of failing")
    add_json_flag(pred)
    pred.set_defaults(func=predict_command)

    bench = subparsers.add_parser("bench", help="latency of an exported artifact on a device")
    bench.add_argument("artifact", metavar="FILE", help=".pte, .onnx or .pt2; without FILE.json the inputs come from the graph")
    bench.add_argument("--runs", type=positive_int, default=100, help="timed runs (default 100)")
    bench.add_argument("--warmup", type=nonneg_int, default=10)
    add_device_args(bench)
    add_json_flag(bench)
    bench.set_defaults(func=bench_command)


def export_command(args: argparse.Namespace) -> dict:
    """Export RUN to --out (and --out.json), check parity, and print what was written."""
    from easrec.export import export_run
    from easrec.io import ensure_writable

    ensure_writable(args.out, directory=False)

    report = export_run(args.run, fmt=args.fmt, out=args.out, quantize=args.quantize, k=args.k, batch=args.batch,
                        parity=not args.no_parity, int8_recipe=args.int8_recipe, embedding_bits=args.embedding_bits)
    par = report.get("parity", {})
    ex = report["export"]
    rows = [("artifact", ex["path"]), ("format / quantize", f"{ex['format']} / {ex['quantize']}"),
            ("size", f"{ex['size_bytes'] / 1024:.1f} KiB"), ("export seconds", ex["seconds"]), ("metadata", report["sidecar"])]
    if ex["format"] == "executorch" and "delegated_nodes" in ex["report"]:
        rep = ex["report"]
        rows.append(("delegated / CPU nodes", f"{rep['delegated_nodes']} / {rep['non_delegated_nodes']} (CPU ops: {', '.join(rep['cpu_ops'])})"))
    quant = ex["report"].get("quantization") or {}
    kept = {**quant.get("fp32_kept", {}), **quant.get("linears_fp32", {})}
    if kept:
        rows.append(("kept fp32", f"{len(kept)} part(s), listed in the metadata ('quantization')"))
    if par:
        rows += [("users", par["users"]), ("max abs diff", par["max_abs_diff"]), ("top-10 overlap", par.get("top10_overlap")),
                 ("NDCG@10 artifact / eager", f"{par['artifact_metrics'].get('ndcg@10', float('nan')):.4f} / {par['eager_metrics'].get('ndcg@10', float('nan')):.4f}"),
                 ("parity", "passed" if par["passed"] else "FAILED: " + par["reason"])]
    emit(args, report, title="export", rows=rows)
    if par and not par["passed"]:
        if par["quantize"] != "none" and args.allow_drop:
            return report
        raise EasrecError(f"{ex['path']}: parity failed: {par['reason']} (artifact kept; --allow-drop accepts it)")
    return report


def predict_command(args: argparse.Namespace) -> dict:
    """Top-k next items for --history; an id the artifact does not know is an error unless --skip-unknown."""
    from easrec.export import load

    history = [h.strip() for h in args.history.split(",") if h.strip()]
    pred = load(args.artifact)
    if args.k is not None and args.k > pred.k:
        raise EasrecError(f"--k {args.k}: {args.artifact} computes the top {pred.k} items (export it with --k {args.k})",
                          field="--k")
    unknown = [h for h in history if h not in pred.index]
    if unknown:
        shown = ", ".join(unknown[:5]) + (" …" if len(unknown) > 5 else "")
        if not args.skip_unknown:
            raise EasrecError(f"--history: {len(unknown)} item id(s) not in the catalogue of {args.artifact}: {shown} "
                              "(--skip-unknown drops them)", field="--history")
        # Said here, once; the predictor then sees only known ids and has nothing to warn about.
        print(f"easrec: note: skipped {len(unknown)} unknown item id(s): {shown}", file=sys.stderr)
    known = [h for h in history if h in pred.index]
    top = pred.predict(known, k=args.k)
    result = {"artifact": str(args.artifact), "history": history, "items": [r for r, _ in top], "scores": [s for _, s in top],
              "skipped": unknown, "empty_history": not known}
    rows = [(f"{i + 1}", f"{r}  ({s:.4f})") for i, (r, s) in enumerate(top)]
    return emit(args, result, title=f"top-{len(top)} after {len(history)} item(s)", rows=rows)


def bench_command(args: argparse.Namespace) -> dict:
    """Time an artifact on a device (writes nothing)."""
    from easrec.export.bench import bench_artifact

    device = device_from_args(args)
    threads = device_threads(device)
    result = bench_artifact(args.artifact, device, runs=args.runs, threads=threads, warmup=args.warmup)
    result["device"] = device.name
    peak = result["peak_rss_mb"]
    rows = [("artifact", result["artifact"]), ("runtime", result["runtime"]), ("median", f"{result['median_ms']:.3f} ms"),
            ("p10 / p90", f"{result['p10_ms']:.3f} / {result['p90_ms']:.3f} ms"), ("load", f"{result['load_ms']:.1f} ms"),
            ("peak RSS (process)", f"{peak:.0f} MB"), ("size", f"{result['size_bytes'] / 1024:.1f} KiB")]
    return emit(args, result, title=f"bench on {device.name}, {threads} thread(s), {result['runs']} runs", rows=rows)
