"""Export: ExecuTorch (`.pte`), ONNX (`.onnx`) and torch.export (`.pt2`) artifacts, fp32 or int8, with
parity checks and a runtime predictor. Every artifact is lowered by `easrec.export.lowering.lower_file`.

    from easrec.export import export_run, load
    result = export_run("runs/ml100k", fmt="executorch", quantize="int8", out="model.pte")
    top = load("model.pte").predict(["12", "45", "7"])     # [(raw_id, score), ...]

Every artifact takes int64 ids [batch, max_len] (left padded with 0, newest last) and returns
(top-k item indices int64 [batch, k], scores float32 [batch, k]) with the history's own items
excluded; the sidecar `FILE.json` maps indices to raw ids (see `easrec.export.artifact`).
ExecuTorch and onnxruntime are imported lazily: `import easrec.export` needs neither.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from easrec.errors import EasrecError, check_choice
from easrec.export.artifact import FORMATS, QUANTIZE, ExportResult, Predictor, load, read_sidecar, sidecar_path, write_sidecar
from easrec.export.graph import TopKGraph

log = logging.getLogger(__name__)

# torch's ONNX exporter warns on every export that torchvision is missing (it registers torchvision
# ops) and pytree emits a deprecation warning per process: noise for easrec's users, which would bury
# the progress display. Real export problems are still raised.
logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*", category=FutureWarning)

__all__ = [
    "ExportResult", "Predictor", "TopKGraph", "export_model", "export_run", "load", "read_sidecar", "sidecar_path",
    "write_sidecar", "FORMATS", "QUANTIZE",
]


def export_model(model, path: str | Path, fmt: str, **kwargs: Any) -> ExportResult:
    """Export `model` as a `fmt` artifact (executorch, onnx or pt2; keyword arguments of `export_artifact`)."""
    from easrec.export.exporter import export_artifact

    return export_artifact(model, path, fmt, **kwargs)


def export_run(
    run: str | Path,
    *,
    fmt: str,
    out: str | Path,
    quantize: str = "none",
    k: int = 10,
    batch: int = 1,
    parity: bool = True,
    tolerance: float = 0.02,
    threads: int = 1,
    int8_recipe: str = "small",
    embedding_bits: int = 8,
) -> dict[str, Any]:
    """Export a run directory's model, write the sidecar, run parity on the test split.

    Returns a JSON-able dict (`export`, `parity`, `sidecar`); `parity['passed']` is False when an
    int8 artifact's NDCG@10 drops more than `tolerance` below fp32 eager (the CLI turns that into
    exit 2 unless --allow-drop).
    """
    from easrec.export.parity import check_parity
    from easrec.train.checkpoint import load_model, load_run_dataset, read_json

    run = Path(run)
    if not run.is_dir():
        raise EasrecError(f"{run}: run directory not found")
    out = Path(out)
    check_choice("format", fmt, FORMATS)
    want = FORMATS[fmt]
    if out.suffix.lower() != want:
        raise EasrecError(f"{out}: a {fmt} artifact must end in {want}")
    check_choice("quantize", quantize, QUANTIZE)
    if batch < 1:
        raise EasrecError(f"batch must be >= 1, got {batch}")
    if fmt == "pt2" and quantize != "none":
        raise EasrecError(f"quantize {quantize}: the pt2 format is fp32 only (int8 is for executorch and onnx)")
    model = load_model(run)
    if not 1 <= k <= model.n_items:
        raise EasrecError(f"k must be in 1..{model.n_items}, got {k}")
    ds = load_run_dataset(run)
    if ds.n_items != model.n_items:
        raise EasrecError(f"{run}/config.json: data set has {ds.n_items} items but the model was trained on {model.n_items}")
    L = model.arch.max_len
    split = ds.split()
    test_inputs, test_targets = split.eval_arrays("test", L)
    calib = split.train_arrays(L)[0] if quantize == "int8-static" else None
    metrics_file = run / "metrics.json"
    metrics = read_json(metrics_file, "metrics") if metrics_file.is_file() else {}
    # The artifact answers under the protocol the model was selected with: a run that kept seen items
    # (data with repeat consumption) ships a graph that may recommend them again.
    exclude_seen = not (isinstance(metrics, dict) and metrics.get("keep_seen") is True)
    result = export_model(model, out, fmt, quantize=quantize, calib=calib, k=k, batch=batch, sample=test_inputs,
                          exclude_seen=exclude_seen, int8_recipe=int8_recipe, embedding_bits=embedding_bits)
    popular = np.argsort(-ds.item_popularity(), kind="stable")
    popular = [int(i) for i in popular if i != 0][: max(k, 10)]
    items = ds.mapping()["items"]
    mapping_file = run / "mapping.json"
    if mapping_file.is_file():
        items = read_json(mapping_file, "mapping").get("items", items)
    side = write_sidecar(
        result, arch=model.arch.to_dict(), n_items=model.n_items, items=items, popular=popular,
        metrics=metrics.get("test", {}) if isinstance(metrics, dict) else {}, source=str(run), excludes_seen=exclude_seen,
    )
    report: dict[str, Any] = {"export": result.to_dict(), "sidecar": str(side)}
    if parity:
        par = check_parity(model, out, test_inputs, test_targets, quantize=quantize, tolerance=tolerance, threads=threads,
                           exclude_seen=exclude_seen)
        report["parity"] = par
        # Record parity in the sidecar (the sha256 is of the artifact, so rewriting the sidecar is safe).
        side = write_sidecar(
            result, arch=model.arch.to_dict(), n_items=model.n_items, items=items, popular=popular,
            metrics=metrics.get("test", {}) if isinstance(metrics, dict) else {}, parity=par, source=str(run),
            excludes_seen=exclude_seen,
        )
    return report
