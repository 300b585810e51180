"""Runtime back ends of the one lowering path (`easrec.export.lowering.lower_file`): XNNPACK
partitioning and `.pte` writing for ExecuTorch, the ONNX exporter and onnxruntime quantization, and
the atomic file writer they share. Nothing here is called except through `lower_file`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch

from easrec.io import atomic_target

log = logging.getLogger(__name__)


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message, whitespace collapsed, at most 300 characters."""
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.splitlines()[0].split())[:300]

def to_xnnpack(programs):
    """`to_edge_transform_and_lower(programs, partitioner=[XnnpackPartitioner()])`, after removing
    identity copies (`RemoveCloneOpsTransform`, as XNNPACK's own pass manager does per partition).

    Why the transform: `nn.Dropout` in eval mode exports as an identity `clone`. In a gated SASRec the
    embedded sequence feeds both that clone and the gates' `cumsum` (a portable kernel), so the
    partitioner puts the clone alone in a delegate whose input is its output once XNNPACK drops the
    copy: "Output node … is already in the inputs … pass through arguments". Removed before
    partitioning, the copy never reaches a delegate. `programs` is one ExportedProgram or a
    {method name: ExportedProgram} dict (a multi-method program); each is consumed.
    """
    import executorch.kernels.quantized  # noqa: F401  (registers the out-variants of quantized ops)
    from executorch.backends.transforms.remove_clone_ops import RemoveCloneOpsTransform
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    return to_edge_transform_and_lower(
        programs,
        transform_passes=[RemoveCloneOpsTransform(preserve_input_output_copies=True)],
        partitioner=[XnnpackPartitioner()],
    )


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


def write_program(edge, path: str | Path) -> Path:
    """`edge.to_executorch()` written atomically to `path`."""
    path = Path(path)
    program = edge.to_executorch()
    with atomic_target(path) as tmp:
        with open(tmp, "wb") as f:
            program.write_to_file(f)
    return path

OPSET = 20


def op_counts(path: str | Path) -> dict[str, int]:
    """Node counts per op type of an ONNX file."""
    import collections

    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return dict(sorted(collections.Counter(n.op_type for n in model.graph.node).items()))


class _Reader:
    """onnxruntime CalibrationDataReader over batches of example inputs."""

    def __init__(self, names: list[str], batches: Sequence[Sequence[torch.Tensor]]):
        self._it = iter([{n: t.detach().cpu().numpy() for n, t in zip(names, b)} for b in batches])

    def get_next(self):
        return next(self._it, None)


def activation_matmuls(path: str | Path) -> list[str]:
    """Names of the MatMul/Gemm nodes of an ONNX file none of whose inputs is a constant (weight)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    consts = {i.name for i in model.graph.initializer}
    consts |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    return [n.name for n in model.graph.node if n.op_type in ("MatMul", "Gemm") and not consts & set(n.input)]


def lower_onnx(module, example_inputs, path: Path, dtype: str, calibration) -> dict[str, Any]:
    """torch.onnx (dynamo) into one self-contained file; int8 by onnxruntime's quantizer.

    `int8`: `quantize_dynamic` (per-channel int8 weights, activations at run time) after
    `quant_pre_process`. `int8-static`: QDQ over the calibration batches, MatMul/Gemm only (per-axis QDQ
    on the embedding Gather breaks in onnxruntime). Either way only matmuls with a weight are quantized.
    """
    names = ["ids"] if len(example_inputs) == 1 else [f"input{i}" for i in range(len(example_inputs))]
    report: dict[str, Any] = {"opset": OPSET, "dtype": dtype}
    with tempfile.TemporaryDirectory(prefix="easrec-onnx-") as work:
        fp32 = Path(work) / "fp32.onnx"
        # The dynamo exporter prints progress lines to stdout: keep stdout clean for --json.
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(module, tuple(example_inputs), dynamo=True, external_data=False, opset_version=OPSET,
                                        input_names=names, verbose=False)
            program.save(str(fp32), external_data=False)
        report["ops_fp32"] = op_counts(fp32)
        final = fp32
        if dtype != "fp32":
            from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
            from onnxruntime.quantization.shape_inference import quant_pre_process

            pre, final = Path(work) / "pre.onnx", Path(work) / "int8.onnx"
            quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
            # Attention's q·kᵀ and softmax·v multiply two activations: quantizing them (onnxruntime's
            # default for every MatMul) cost several % NDCG@10; only matmuls with a weight are int8.
            exclude = activation_matmuls(pre)
            report["matmuls_fp32"] = exclude
            if dtype == "int8":
                quantize_dynamic(str(pre), str(final), weight_type=QuantType.QInt8, per_channel=True,
                                 nodes_to_exclude=exclude)
            else:
                quantize_static(str(pre), str(final), _Reader(names, calibration), quant_format=QuantFormat.QDQ,
                                per_channel=True, weight_type=QuantType.QInt8, activation_type=QuantType.QInt8,
                                op_types_to_quantize=["MatMul", "Gemm"], nodes_to_exclude=exclude)
            report["ops_pre"] = op_counts(pre)
            report["ops_int8"] = op_counts(final)
            # quantize_dynamic skips Gemm nodes: say so when one is left in float.
            left = report["ops_int8"].get("Gemm", 0) if dtype == "int8" else 0
            if left:
                log.warning("%s: %d Gemm node(s) left in float (quantize_dynamic skips Gemm)", path.name, left)
            report["float_gemm_left"] = left
        with atomic_target(path) as tmp:
            shutil.copyfile(final, tmp)
    report["ops"] = op_counts(path)
    return report
