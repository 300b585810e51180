"""Lower any `nn.Module` + example inputs to a file one runtime loads: `.pte`, `.onnx` or `.pt2`.

The profiler measures components and whole subnets through exactly the path that ships:
ExecuTorch (`executorch_program`: torch.export → constant propagation → int8 through the PT2E flow
with `XNNPACKQuantizer`, dynamic per-channel — the steps of `export_executorch`; then `to_xnnpack`:
`to_edge_transform_and_lower(XnnpackPartitioner)` after removing identity copies), ONNX Runtime (`torch.onnx.export(dynamo=True)`
in one self-contained file; int8 with onnxruntime's `quantize_dynamic`), or torch (`torch.export.save`).
Runtimes are imported lazily, inside the function that needs them.

Lowering costs seconds per graph (ExecuTorch: 2–15 s, int8 more), so `lower(..., cache=True)` keeps
every lowered file in a content-addressed cache (`lowering_cache_dir()`: `$EASREC_CACHE/lowered`, default
`~/.cache/easrec/lowered`): the key hashes the module's weights and buffers, its structure and plain
attributes, the source files of every module class it uses and of the lowering code, the example
inputs, the runtime, its version and the dtype. A graph seen before is copied, not lowered again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import inspect
import io
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn as nn

from easrec.errors import EasrecError

log = logging.getLogger(__name__)

RUNTIMES = ("executorch", "onnxruntime", "torch")
DTYPES = ("fp32", "int8")
SUFFIX = {"executorch": ".pte", "onnxruntime": ".onnx", "torch": ".pt2"}


def suffix_for(runtime: str) -> str:
    """File suffix of an artifact for `runtime`."""
    check(runtime, "fp32")
    return SUFFIX[runtime]


def check(runtime: str, dtype: str) -> None:
    """Raise EasrecError for an unknown runtime or dtype (or a combination that is not supported)."""
    if runtime not in RUNTIMES:
        raise EasrecError(f"runtime: unknown runtime {runtime!r} (expected one of {', '.join(RUNTIMES)})")
    if dtype not in DTYPES:
        raise EasrecError(f"dtype: unknown dtype {dtype!r} (expected one of {', '.join(DTYPES)})")
    if runtime == "torch" and dtype == "int8":
        raise EasrecError("dtype: int8 is supported for the executorch and onnxruntime runtimes, not torch")


def runtime_version(runtime: str) -> str:
    """Installed version of a runtime (for fingerprints)."""
    from importlib.metadata import PackageNotFoundError, version

    dist = {"executorch": "executorch", "onnxruntime": "onnxruntime", "torch": "torch"}[runtime]
    try:
        return version(dist)
    except PackageNotFoundError as exc:
        raise EasrecError(f"runtime: {runtime} is not installed") from exc


def lower(
    module: nn.Module,
    example_inputs: Sequence[torch.Tensor],
    path: str | Path,
    runtime: str = "executorch",
    dtype: str = "fp32",
    *,
    calibration: Sequence[Sequence[torch.Tensor]] | None = None,
    cache: bool | str | Path | None = None,
) -> Path:
    """Export `module(*example_inputs)` to `path` for `runtime`; returns the path written.

    Shapes are static (batch and length of the example inputs). `calibration` is only used by the
    int8 ExecuTorch flow (defaults to the example inputs; dynamic quantization needs no statistics).
    `cache` (True: `lowering_cache_dir()`, or a folder): reuse a file lowered before from the same content.
    """
    return lower_cached(module, example_inputs, path, runtime, dtype, calibration=calibration, cache=cache)[0]


def lower_cached(
    module: nn.Module,
    example_inputs: Sequence[torch.Tensor],
    path: str | Path,
    runtime: str = "executorch",
    dtype: str = "fp32",
    *,
    calibration: Sequence[Sequence[torch.Tensor]] | None = None,
    cache: bool | str | Path | None = True,
    key: str | None = None,
) -> tuple[Path, bool]:
    """`lower` through the content-addressed cache; returns (path written, whether it came from the cache).

    `key` is the content hash when the caller computed it already (`content_hash`).
    """
    check(runtime, dtype)
    path = Path(path)
    folder = _cache_folder(cache)
    if folder is None:
        return _lower_now(module, example_inputs, path, runtime, dtype, calibration), False
    key = key or content_hash(module, example_inputs, runtime, dtype, calibration)
    cached = folder / (key + SUFFIX[runtime])
    if cached.is_file():
        _copy_atomic(cached, path)
        log.debug("%s: lowered graph %s taken from the cache", path.name, key)
        return path, True
    _lower_now(module, example_inputs, path, runtime, dtype, calibration)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _copy_atomic(path, cached)
    except OSError as exc:  # a read-only or full cache must not fail the lowering itself
        log.warning("lowering cache %s: cannot store %s (%s)", folder, cached.name, exc)
    return path, False


def lowering_cache_dir() -> Path:
    """Folder of the lowered-graph cache: `$EASREC_CACHE/lowered`, else `~/.cache/easrec/lowered`."""
    root = os.environ.get("EASREC_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "easrec") / "lowered"


def cached_path(key: str, runtime: str, cache: bool | str | Path | None = True) -> Path | None:
    """Where the cache keeps the graph of content hash `key` if it holds it, else None."""
    folder = _cache_folder(cache)
    if folder is None:
        return None
    p = folder / (key + SUFFIX[runtime])
    return p if p.is_file() else None


def _cache_folder(cache: bool | str | Path | None) -> Path | None:
    if cache is None or cache is False:
        return None
    return lowering_cache_dir() if cache is True else Path(cache)


def _copy_atomic(src: Path, dst: Path) -> None:
    # A copy (not a link): the caller may delete or overwrite its file, the cache must keep its own.
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


_SOURCE_HASHES: dict[str, str] = {}
CACHE_VERSION = "easrec-lowered-1"


def _source_hash(filename: str | None) -> str:
    """sha1 of a source file's bytes (memoised): an edited model or exporter invalidates its graphs."""
    if not filename:
        return "-"
    if filename not in _SOURCE_HASHES:
        try:
            _SOURCE_HASHES[filename] = hashlib.sha1(Path(filename).read_bytes()).hexdigest()
        except OSError:
            _SOURCE_HASHES[filename] = "-"
    return _SOURCE_HASHES[filename]


def _plain(value: Any) -> bool:
    if isinstance(value, (bool, int, float, str, type(None))):
        return True
    if isinstance(value, (tuple, list)):
        return all(_plain(v) for v in value)
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def _hash_tensor(h: "hashlib._Hash", name: str, t: torch.Tensor) -> None:
    t = t.detach().cpu().contiguous()
    h.update(f"{name}:{t.dtype}:{tuple(t.shape)}:".encode())
    h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def content_hash(
    module: nn.Module,
    example_inputs: Sequence[torch.Tensor],
    runtime: str,
    dtype: str,
    calibration: Sequence[Sequence[torch.Tensor]] | None = None,
) -> str:
    """Hash of everything the lowered file depends on (see the module docstring); 40 hex digits."""
    h = hashlib.sha1()
    h.update(f"{CACHE_VERSION}|{runtime}|{dtype}|{runtime_version(runtime)}|{torch.__version__}|".encode())
    # The exporters next to this file, whether or not this process imported them yet: the key must not
    # depend on what happened to be imported before.
    here = Path(__file__).resolve().parent
    files = {str(here / name) for name in ("lowering.py", "executorch.py", "onnx.py", "graph.py")}
    for name, sub in module.named_modules():
        cls = type(sub)
        try:
            files.add(inspect.getsourcefile(cls) or "")
        except TypeError:  # a builtin class
            pass
        attrs = {k: repr(v) for k, v in sorted(vars(sub).items())
                 if not k.startswith("_") and k != "training" and _plain(v)}
        h.update(f"{name}|{cls.__module__}.{cls.__qualname__}|{attrs}|".encode())
    for f in sorted(files):
        h.update(f"{os.path.basename(f)}:{_source_hash(f)}|".encode())
    for name, p in module.named_parameters(remove_duplicate=False):
        _hash_tensor(h, name, p)
    for name, b in module.named_buffers(remove_duplicate=False):
        _hash_tensor(h, name, b)
    for i, t in enumerate(example_inputs):
        _hash_tensor(h, f"input{i}", t)
    for j, batch in enumerate(calibration or []):
        for i, t in enumerate(batch):
            _hash_tensor(h, f"calib{j}.{i}", t)
    return h.hexdigest()


def _lower_now(module, example_inputs, path: Path, runtime: str, dtype: str, calibration) -> Path:
    """Lower without the cache (the original `lower`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Frozen: constant propagation turns the weights into constants (no grad-requiring tensors warned about).
    module = module.eval().requires_grad_(False)
    example_inputs = tuple(example_inputs)
    try:
        with torch.no_grad():
            if runtime == "executorch":
                _lower_executorch(module, example_inputs, path, dtype, calibration)
            elif runtime == "onnxruntime":
                _lower_onnx(module, example_inputs, path, dtype)
            else:
                ep = torch.export.export(module, example_inputs)
                torch.export.save(ep, str(path))
    except EasrecError:
        raise
    except Exception as exc:  # an export failure: one line naming the runtime and the module
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise EasrecError(f"{path.name}: lowering {type(module).__name__} for {runtime} {dtype} failed: {text}") from exc
    return path


def fold_constants(ep):
    """Constant propagation over an exported program: folds SASRec's weight slices, without which
    XNNPACK sees linears with non-constant weights and delegates none of them."""
    from executorch.exir.passes.constant_prop_pass import constant_prop_pass

    return constant_prop_pass(ep)


def executorch_program(module: nn.Module, example_inputs: Sequence[torch.Tensor], dtype: str = "fp32", calibration=None):
    """The ATen program `export_executorch` lowers: torch.export (non-strict) → constant propagation
    (`fold_constants`) → for int8, PT2E with `XNNPACKQuantizer` (per-channel
    weights, dynamic activations) and export again."""
    from easrec.export.executorch import export_program

    what = type(module).__name__
    example_inputs = tuple(example_inputs)
    ep = export_program(module, example_inputs, what)
    ep = fold_constants(ep)
    if dtype == "int8":
        q = quantize_pt2e_xnnpack(ep.module(), example_inputs, calibration)
        ep = export_program(q, example_inputs, f"quantized {what}")
    return ep


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
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import (
        XnnpackPartitioner,
    )
    from executorch.exir import to_edge_transform_and_lower

    return to_edge_transform_and_lower(
        programs,
        transform_passes=[RemoveCloneOpsTransform(preserve_input_output_copies=True)],
        partitioner=[XnnpackPartitioner()],
    )


def _lower_executorch(module, example_inputs, path: Path, dtype: str, calibration) -> None:
    # The shipped exporter's steps (export/executorch.py): export, fold, optional int8, XNNPACK.
    edge = to_xnnpack(executorch_program(module, example_inputs, dtype, calibration))
    if log.isEnabledFor(logging.DEBUG):
        try:
            from executorch.devtools.backend_debug import get_delegation_info

            info = get_delegation_info(edge.exported_program().graph_module)
            log.debug("%s: %d delegated / %d non-delegated ops", path.name,
                      info.num_delegated_nodes, info.num_non_delegated_nodes)
        except Exception as exc:  # devtools missing: not fatal
            log.debug("delegation info unavailable: %s", exc)
    write_program(edge, path)


def write_program(edge, path: str | Path) -> Path:
    """`edge.to_executorch()` written atomically to `path`."""
    path = Path(path)
    program = edge.to_executorch()
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        program.write_to_file(f)
    os.replace(tmp, path)
    return path


def quantize_pt2e_xnnpack(module: nn.Module, example_inputs, calibration=None, is_dynamic: bool = True) -> nn.Module:
    """PT2E int8 (per-channel, dynamic activations by default) for XNNPACK; returns the converted module."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=is_dynamic))
    gm = module if isinstance(module, torch.fx.GraphModule) else torch.export.export(module, tuple(example_inputs), strict=False).module()
    prepared = prepare_pt2e(gm, quantizer)
    for batch in calibration or [example_inputs]:
        prepared(*batch)
    return convert_pt2e(prepared)


def _lower_onnx(module, example_inputs, path: Path, dtype: str) -> None:
    target = path if dtype == "fp32" else path.with_name(f".{path.stem}.fp32.onnx")
    # The dynamo exporter prints progress lines to stdout: keep stdout clean for --json.
    with contextlib.redirect_stdout(io.StringIO()):
        from easrec.export.onnx import OPSET

        onnx_program = torch.onnx.export(module, tuple(example_inputs), dynamo=True, external_data=False, opset_version=OPSET)
        onnx_program.save(str(target), external_data=False)
    if dtype == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        try:
            from onnxruntime.quantization.shape_inference import quant_pre_process

            pre = path.with_name(f".{path.stem}.pre.onnx")
            quant_pre_process(str(target), str(pre), skip_symbolic_shape=True)
            os.replace(pre, target)
        except Exception as exc:  # pre-processing is an optimisation only
            log.debug("quant_pre_process skipped: %s", exc)
        # quantize_dynamic skips Gemm nodes by default: include them explicitly (MatMul and Gemm).
        # As the shipped exporter (export/onnx.py): dynamic, per-channel weights.
        quantize_dynamic(str(target), str(path), weight_type=QuantType.QInt8, per_channel=True)
        target.unlink(missing_ok=True)


def lower_to_temp(module: nn.Module, example_inputs, runtime: str, dtype: str = "fp32", directory: str | Path | None = None) -> Path:
    """`lower` into a fresh temporary file (the caller deletes it)."""
    fd, name = tempfile.mkstemp(suffix=suffix_for(runtime), dir=directory)
    os.close(fd)
    return lower(module, example_inputs, name, runtime, dtype)


def numpy_inputs(example_inputs: Sequence[torch.Tensor]) -> list[Any]:
    """Example inputs as contiguous numpy arrays (what `Device.measure` takes)."""
    return [t.detach().cpu().contiguous().numpy() for t in example_inputs]
