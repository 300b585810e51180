"""ExecuTorch export: the shipped graph through `easrec.export.lowering.lower_file` → `.pte` for XNNPACK.

`int8` quantizes the item table for the lookup (ExecuTorch's quantized embedding kernel, one scale per
item) and the linears with PT2E (per-channel weights, activations quantized at run time);
`int8-static` calibrates the block linears' activations on real training sequences and keeps the
catalogue scoring dynamic. `int8_recipe="fast"` quantizes only what int8 runs faster on this x86 CPU
(the weight-bound catalogue scoring and last-position linears) and keeps the rest fp32; the report and
the sidecar list what stayed fp32 and why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from easrec.export.artifact import ExportResult
from easrec.export.exporter import calibration_batches, export_artifact
from easrec.export.lowering import delegation_report, export_program, one_line

__all__ = ["export_executorch", "calibration_batches", "delegation_report", "export_program", "one_line"]


def export_executorch(model: torch.nn.Module, path: str | Path, **options: Any) -> ExportResult:
    """Export `model` (a SASRec) as a `.pte` for XNNPACK; writes FILE and FILE.delegation.json. `options` are `export_artifact`'s (quantize, calib, k, batch, exclude_seen, sample, ...)."""
    return export_artifact(model, path, "executorch", **options)
