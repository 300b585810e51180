"""What every exporter does around the one lowering function: wrap the model in the shipped graph,
pick real example and calibration sequences, lower (`easrec.export.lowering.lower_file`), and write
FILE plus its lowering report (`FILE.delegation.json`, `FILE.ops.json` or `FILE.lowering.json`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from easrec.errors import EasrecError, check_choice
from easrec.io import atomic_write_json
from easrec.export.artifact import FORMATS, QUANTIZE, ExportResult
from easrec.export.graph import TopKGraph, example_inputs
from easrec.export import lowering
from easrec.export.lowering import INT8_RECIPES

log = logging.getLogger(__name__)

RUNTIME = {"executorch": "executorch", "onnx": "onnxruntime", "pt2": "torch"}
REPORT_SUFFIX = {"executorch": ".delegation.json", "onnx": ".ops.json", "pt2": ".lowering.json"}
# Calibration: 256 real training sequences (the parity check runs on the test split, never on these).
CALIBRATION_SEQUENCES = 256


def calibration_batches(calib: np.ndarray | None, batch: int, max_len: int, n: int = CALIBRATION_SEQUENCES) -> list[torch.Tensor]:
    """Up to `n` sequences (in batches of `batch`) of real data, the last `max_len` ids of each row."""
    if calib is None or len(calib) == 0:
        return []
    arr = np.asarray(calib, dtype=np.int64)[:, -max_len:]
    if arr.shape[1] < max_len:
        arr = np.pad(arr, ((0, 0), (max_len - arr.shape[1], 0)))
    arr = arr[(arr != 0).any(1)]
    rng = np.random.default_rng(0)
    arr = arr[rng.permutation(len(arr))[: max(1, n // batch) * batch]]
    return [torch.from_numpy(np.ascontiguousarray(arr[s : s + batch])) for s in range(0, len(arr) - batch + 1, batch)]


def export_artifact(
    model: torch.nn.Module,
    path: str | Path,
    fmt: str,
    *,
    quantize: str = "none",
    calib: np.ndarray | None = None,
    k: int = 10,
    batch: int = 1,
    exclude_seen: bool = True,
    sample: np.ndarray | None = None,
    int8_recipe: str = "small",
    embedding_bits: int = 8,
) -> ExportResult:
    """Export `model` (a SASRec) as a `fmt` artifact at `path` through `lowering.lower_file`; writes FILE and its report."""
    check_choice("format", fmt, FORMATS)
    check_choice("quantize", quantize, QUANTIZE)
    check_choice("int8_recipe", int8_recipe, INT8_RECIPES)
    if fmt == "pt2" and quantize != "none":
        raise EasrecError(f"quantize {quantize}: the pt2 format is fp32 only (int8 is for executorch and onnx)")
    path = Path(path)
    t0 = time.perf_counter()
    graph = TopKGraph(model, k=k, exclude_seen=exclude_seen).eval()
    max_len = graph.max_len
    example = example_inputs(max_len, batch, sample)
    calibration = None
    if quantize == "int8-static":
        batches = calibration_batches(calib, batch, max_len)
        if not batches:
            raise EasrecError("int8-static needs calibration sequences (pass calib=training sequences)")
        calibration = [(b,) for b in batches]
    dtype = "fp32" if quantize == "none" else quantize
    report: dict[str, Any] = lowering.lower_file(graph, example, path, RUNTIME[fmt], dtype, calibration=calibration,
                                        int8_recipe=int8_recipe, embedding_bits=embedding_bits)
    report.update({"quantize": quantize, "k": k, "batch": batch, "max_len": max_len})
    if calibration:
        report["calibration_sequences"] = len(calibration) * batch
    report_path = path.with_name(path.name + REPORT_SUFFIX[fmt])
    atomic_write_json(report_path, report)
    if fmt == "executorch" and "delegated_nodes" in report:
        log.info("%s: %d delegated subgraphs, %d delegated / %d CPU-kernel nodes; CPU ops: %s", path.name,
                 report["delegated_subgraphs"], report["delegated_nodes"], report["non_delegated_nodes"],
                 ", ".join(report["cpu_ops"]) or "none")
    elif fmt == "onnx":
        log.info("%s: ops %s", path.name, report.get("ops"))
    return ExportResult(
        path=path, format=fmt, quantize=quantize, size_bytes=path.stat().st_size, seconds=time.perf_counter() - t0,
        k=k, batch=batch, max_len=max_len, report_path=report_path, report=report,
    )
