"""torch.export package: the shipped graph saved with `torch.export.save` as a `.pt2`.

The file runs wherever torch runs (`torch.export.load(FILE).module()`, on CPU or moved to CUDA), which
is what `easrec bench --device cuda` times; fp32 only. Through `easrec.export.lowering.lower_file`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from easrec.export.artifact import ExportResult
from easrec.export.exporter import export_artifact

__all__ = ["export_pt2"]


def export_pt2(
    model: torch.nn.Module,
    path: str | Path,
    *,
    quantize: str = "none",
    k: int = 10,
    batch: int = 1,
    exclude_seen: bool = True,
    sample: np.ndarray | None = None,
    **_: object,
) -> ExportResult:
    """Export `model` (a SASRec) as a torch.export `.pt2`; writes FILE and FILE.lowering.json."""
    return export_artifact(model, path, "pt2", quantize=quantize, k=k, batch=batch, exclude_seen=exclude_seen,
                           sample=sample)
