"""ONNX export: `torch.onnx.export(dynamo=True)` into one self-contained file; int8 via ONNX Runtime.

`int8` is `quantize_dynamic` (per-channel int8 weights, activations quantized at run time) after
`quant_pre_process`; `quantize_dynamic` does not quantize `Gemm` nodes, so the op counts before
and after are saved (`FILE.ops.json`) and a Gemm left in float is reported. `int8-static` is QDQ
with a `CalibrationDataReader` over real training sequences, restricted to MatMul/Gemm (per-axis
QDQ on the embedding Gather breaks in onnxruntime).
"""

from __future__ import annotations

import collections
import logging
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from easrec.errors import EasrecError, atomic_write_json
from easrec.export.artifact import QUANTIZE, ExportResult, temp_target
from easrec.export.executorch import _one_line, calibration_batches
from easrec.export.graph import TopKGraph, example_inputs

log = logging.getLogger(__name__)

OPSET = 20


def op_counts(path: str | Path) -> dict[str, int]:
    """Node counts per op type of an ONNX file."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return dict(sorted(collections.Counter(n.op_type for n in model.graph.node).items()))


def _export_fp32(graph: torch.nn.Module, example: tuple, target: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(
                graph, example, dynamo=True, external_data=False, opset_version=OPSET,
                input_names=["ids"], output_names=["items", "scores"], verbose=False,
            )
            program.save(str(target), external_data=False)
        except Exception as exc:
            raise EasrecError(f"{target.name}: ONNX export failed: {_one_line(exc)}") from exc


class _Reader:
    """CalibrationDataReader over batches of real sequences."""

    def __init__(self, batches: list[np.ndarray]):
        self._it = iter([{"ids": b} for b in batches])

    def get_next(self):
        return next(self._it, None)


def export_onnx(
    model: torch.nn.Module,
    path: str | Path,
    *,
    quantize: str = "none",
    calib: np.ndarray | None = None,
    k: int = 10,
    batch: int = 1,
    exclude_seen: bool = True,
    sample: np.ndarray | None = None,
) -> ExportResult:
    """Export `model` (a SASRec) as one `.onnx` file; writes FILE and FILE.ops.json."""
    if quantize not in QUANTIZE:
        raise EasrecError(f"quantize must be one of {', '.join(QUANTIZE)}, got {quantize!r}")
    path = Path(path)
    t0 = time.perf_counter()
    graph = TopKGraph(model, k=k, exclude_seen=exclude_seen).eval()
    max_len = graph.max_len
    example = example_inputs(max_len, batch, sample)
    report: dict[str, Any] = {"quantize": quantize, "k": k, "batch": batch, "max_len": max_len, "opset": OPSET}
    with tempfile.TemporaryDirectory(prefix="easrec-onnx-") as work:
        fp32 = Path(work) / "fp32.onnx"
        _export_fp32(graph, example, fp32)
        report["ops_fp32"] = op_counts(fp32)
        final = fp32
        if quantize != "none":
            from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
            from onnxruntime.quantization.shape_inference import quant_pre_process

            pre = Path(work) / "pre.onnx"
            final = Path(work) / "int8.onnx"
            try:
                quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
                if quantize == "int8":
                    quantize_dynamic(str(pre), str(final), weight_type=QuantType.QInt8, per_channel=True)
                else:
                    batches = [b.numpy() for b in calibration_batches(calib, batch, max_len)]
                    if not batches:
                        raise EasrecError("int8-static needs calibration sequences (pass calib=training sequences)")
                    quantize_static(
                        str(pre), str(final), _Reader(batches), quant_format=QuantFormat.QDQ, per_channel=True,
                        weight_type=QuantType.QInt8, activation_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"],
                    )
            except EasrecError:
                raise
            except Exception as exc:
                raise EasrecError(f"{path.name}: ONNX Runtime quantization failed: {_one_line(exc)}") from exc
            report["ops_pre"] = op_counts(pre)
            report["ops_int8"] = op_counts(final)
            left = report["ops_int8"].get("Gemm", 0) if quantize == "int8" else 0
            if left:
                log.warning("%s: %d Gemm node(s) left in float (quantize_dynamic skips Gemm)", path.name, left)
            report["float_gemm_left"] = left
        with temp_target(path, ".onnx") as tmp:
            tmp.write_bytes(final.read_bytes())
    report["ops"] = op_counts(path)
    report_path = path.with_name(path.name + ".ops.json")
    atomic_write_json(report_path, report)
    log.info("%s: ops %s", path.name, report["ops"])
    return ExportResult(
        path=path, format="onnx", quantize=quantize, size_bytes=path.stat().st_size,
        seconds=time.perf_counter() - t0, k=k, batch=batch, max_len=max_len, report_path=report_path, report=report,
    )
