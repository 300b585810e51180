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

import numpy as np
import torch

from easrec.export.artifact import ExportResult
from easrec.export.exporter import calibration_batches, export_artifact
from easrec.export.lowering import delegation_report, export_program, one_line

__all__ = ["export_executorch", "calibration_batches", "delegation_report", "export_program", "one_line"]


def export_executorch(
    model: torch.nn.Module,
    path: str | Path,
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
    """Export `model` (a SASRec) as a `.pte` for XNNPACK; writes FILE and FILE.delegation.json."""
    return export_artifact(model, path, "executorch", quantize=quantize, calib=calib, k=k, batch=batch,
                           exclude_seen=exclude_seen, sample=sample, int8_recipe=int8_recipe,
                           embedding_bits=embedding_bits)
