"""ExecuTorch export: torch.export → to_edge_transform_and_lower(XnnpackPartitioner) → `.pte`.

Quantization goes through PT2E (`prepare_pt2e` / `convert_pt2e` with `XNNPACKQuantizer`): `int8` is
dynamic per-channel int8 for the linear layers (activations quantized at run time), `int8-static`
calibrates activation ranges on real training sequences. The model's weights reach the graph as
(no-op) slices of its parameters, because SASRec slices for weight sharing; `constant_prop_pass`
folds them back into constants, without which XNNPACK would see linears with non-constant weights
and delegate none of them. The causal mask is kept out of that folding (see `export_executorch`). ExecuTorch is imported inside the functions so that `easrec.export`
imports on a machine without it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from easrec.errors import EasrecError, atomic_write_json
from easrec.export.artifact import QUANTIZE, ExportResult, temp_target
from easrec.export.graph import TopKGraph, example_inputs

log = logging.getLogger(__name__)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.splitlines()[0].split())[:300]


def export_program(graph: torch.nn.Module, example: tuple, what: str = "model"):
    """torch.export with a one-line error that names the failing op where torch says it."""
    try:
        return torch.export.export(graph, example, strict=False)
    except Exception as exc:
        raise EasrecError(f"{what}: torch.export failed: {_one_line(exc)}") from exc


def calibration_batches(calib: np.ndarray | None, batch: int, max_len: int, n: int = 64) -> list[torch.Tensor]:
    """Up to `n` batches of real sequences (the last `max_len` ids of each row) for calibration."""
    if calib is None or len(calib) == 0:
        return []
    arr = np.asarray(calib, dtype=np.int64)[:, -max_len:]
    if arr.shape[1] < max_len:
        arr = np.pad(arr, ((0, 0), (max_len - arr.shape[1], 0)))
    arr = arr[(arr != 0).any(1)]
    rng = np.random.default_rng(0)
    rows = rng.permutation(len(arr))[: n * batch]
    arr = arr[rows]
    out = []
    for start in range(0, len(arr) - batch + 1, batch):
        out.append(torch.from_numpy(np.ascontiguousarray(arr[start : start + batch])))
    return out


def quantize_pt2e(ep, example: tuple, quantize: str, calib: list[torch.Tensor]):
    """PT2E int8 with XNNPACKQuantizer (per-channel weights; dynamic or static activations)."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    dynamic = quantize == "int8"
    if not dynamic and not calib:
        raise EasrecError("int8-static needs calibration sequences (pass calib=training sequences)")
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=dynamic))
    prepared = prepare_pt2e(ep.module(), quantizer)
    with torch.no_grad():
        for ids in calib or [example[0]]:
            prepared(ids)
    converted = convert_pt2e(prepared)
    return export_program(converted, example, "quantized model")


def delegation_report(edge) -> dict[str, Any]:
    """Delegated vs CPU-kernel ops of a lowered program (`get_delegation_info`)."""
    from executorch.devtools.backend_debug import get_delegation_info

    info = get_delegation_info(edge.exported_program().graph_module)
    df = info.get_operator_delegation_dataframe()
    ops = {}
    for _, row in df.iterrows():
        name = str(row.iloc[0])
        if name in ("Total", "getitem"):
            continue
        ops[name] = {"delegated": int(row.iloc[1]), "cpu": int(row.iloc[2])}
    return {
        "delegated_subgraphs": int(info.num_delegated_subgraphs),
        "delegated_nodes": int(info.num_delegated_nodes),
        "non_delegated_nodes": int(info.num_non_delegated_nodes),
        "cpu_ops": sorted(name for name, c in ops.items() if c["cpu"]),
        "ops": ops,
    }


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
) -> ExportResult:
    """Export `model` (a SASRec) as a `.pte` for XNNPACK; writes FILE and FILE.delegation.json."""
    if quantize not in QUANTIZE:
        raise EasrecError(f"quantize must be one of {', '.join(QUANTIZE)}, got {quantize!r}")
    try:
        import executorch.kernels.quantized  # noqa: F401  (registers the out-variants of quantized ops)
        from easrec.export.lowering import fold_constants, to_xnnpack
    except ImportError as exc:
        raise EasrecError(f"executorch export needs the executorch package ({exc})") from exc
    path = Path(path)
    t0 = time.perf_counter()
    graph = TopKGraph(model, k=k, exclude_seen=exclude_seen).eval()
    max_len = graph.max_len
    example = example_inputs(max_len, batch, sample)
    ep = export_program(graph, example)
    ep = fold_constants(ep)
    if quantize != "none":
        ep = quantize_pt2e(ep, example, quantize, calibration_batches(calib, batch, max_len))
    try:
        edge = to_xnnpack(ep)
        report = delegation_report(edge)
        program = edge.to_executorch()
        buffer = program.buffer
    except EasrecError:
        raise
    except Exception as exc:
        raise EasrecError(f"{path.name}: lowering to ExecuTorch failed: {_one_line(exc)}") from exc
    with temp_target(path, ".pte") as tmp:
        tmp.write_bytes(buffer)
    report_path = path.with_name(path.name + ".delegation.json")
    report.update({"quantize": quantize, "k": k, "batch": batch, "max_len": max_len})
    atomic_write_json(report_path, report)
    log.info(
        "%s: %d delegated subgraphs, %d delegated / %d CPU-kernel nodes; CPU ops: %s",
        path.name, report["delegated_subgraphs"], report["delegated_nodes"], report["non_delegated_nodes"],
        ", ".join(report["cpu_ops"]) or "none",
    )
    return ExportResult(
        path=path, format="executorch", quantize=quantize, size_bytes=path.stat().st_size,
        seconds=time.perf_counter() - t0, k=k, batch=batch, max_len=max_len, report_path=report_path, report=report,
    )
