"""torch.export package: the shipped graph saved with `torch.export.save` as a `.pt2`.

The file runs wherever torch runs (`torch.export.load(FILE).module()`, on CPU or moved to CUDA), which
is what `easrec bench --device cuda` times; fp32 only. Through `easrec.export.lowering.lower_file`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from easrec.export.artifact import ExportResult
from easrec.export.exporter import export_artifact

__all__ = ["export_pt2"]


def export_pt2(model: torch.nn.Module, path: str | Path, **options: Any) -> ExportResult:
    """Export `model` (a SASRec) as a torch.export `.pt2`; writes FILE and FILE.lowering.json. `options` are `export_artifact`'s (quantize, calib, k, batch, exclude_seen, sample, ...)."""
    return export_artifact(model, path, "pt2", **options)
