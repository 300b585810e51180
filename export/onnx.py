"""ONNX export: the shipped graph through `easrec.export.lowering.lower_file` → one self-contained `.onnx`.

`int8` is onnxruntime's `quantize_dynamic` (per-channel int8 weights, activations quantized at run
time) after `quant_pre_process`; `quantize_dynamic` does not quantize `Gemm` nodes, so the op counts
before and after are saved (`FILE.ops.json`) and a Gemm left in float is reported. `int8-static` is
QDQ with a `CalibrationDataReader` over real training sequences, restricted to MatMul/Gemm.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from easrec.export.artifact import ExportResult
from easrec.export.exporter import export_artifact
from easrec.export.lowering import OPSET, op_counts

__all__ = ["export_onnx", "op_counts", "OPSET"]


def export_onnx(model: torch.nn.Module, path: str | Path, **options: Any) -> ExportResult:
    """Export `model` (a SASRec) as one `.onnx` file; writes FILE and FILE.ops.json. `options` are `export_artifact`'s (quantize, calib, k, batch, exclude_seen, sample, ...)."""
    return export_artifact(model, path, "onnx", **options)
