"""The one lowering path: any `nn.Module` + example inputs → a `.pte`, `.onnx` or `.pt2` file.

`lower_file` is the only code in easrec that lowers a graph. The exporters (`export_executorch`,
`export_onnx`, `export_pt2`), the latency-table components and the validation subnets all call it
(the profiler through `lower` with its cache), so the table measures exactly the path that ships:

- ExecuTorch: torch.export (non-strict) → constant propagation (folds SASRec's weight slices) → for
  int8, every embedding lookup of a constant table becomes ExecuTorch's quantized lookup
  (`quantize_embeddings`, int8 per row or int4 per group) and the linears go through PT2E with
  `XNNPACKQuantizer` (`quantize_linears`: per-channel weights, dynamic or static activations, optionally
  only the weight-bound linears: `INT8_RECIPES`) → `to_edge_transform_and_lower(XnnpackPartitioner)`.
- ONNX Runtime: `torch.onnx.export(dynamo=True)` in one self-contained file; int8 with onnxruntime's
  `quantize_dynamic` or QDQ `quantize_static`.
- torch: `torch.export.save` (a `.pt2` that `torch.export.load` runs on CPU or CUDA).

Runtimes are imported lazily, inside the function that needs them.

Lowering costs seconds per graph (ExecuTorch: 2–15 s, int8 more), so `lower(..., cache=True)` keeps
every lowered file in a content-addressed cache (`lowering_cache_dir()`: `$EASREC_CACHE/lowered`, default
`~/.cache/easrec/lowered`): the key hashes the module's weights and buffers, its structure and plain
attributes, the source files of every module class it uses and of the lowering code, the example
inputs, the runtime, its version and the dtype. A graph seen before is copied, not lowered again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn as nn

from easrec.errors import EasrecError, check_choice
from easrec.io import atomic_target
from easrec.export.backends import OPSET, delegation_report, lower_onnx, one_line, op_counts, to_xnnpack, write_program
from easrec.export.quantize import compute_causal_masks, quantize_embeddings, quantize_linears

__all__ = [
    "CACHE_VERSION", "DTYPES", "INT8_RECIPES", "OPSET", "RUNTIMES", "cached_path", "check", "content_hash",
    "delegation_report", "executorch_program", "export_program", "fold_constants", "lower", "lower_file",
    "lower_to_temp", "lowering_cache_dir", "numpy_inputs", "one_line", "op_counts", "runtime_version", "suffix_for",
    "to_xnnpack", "write_program",
]

log = logging.getLogger(__name__)

RUNTIMES = ("executorch", "onnxruntime", "torch")
DTYPES = ("fp32", "int8", "int8-static")
# What int8 means on ExecuTorch (`executorch_program`). "small": every linear, the embedding tables and
# the causal mask (a small file, a few % slower than fp32 on x86); "fast": only what int8 runs faster
# here, i.e. the weight-bound linears (the catalogue scoring), everything else stays fp32.
INT8_RECIPES = ("small", "fast")
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
    if runtime == "torch" and dtype != "fp32":
        raise EasrecError(f"dtype: {dtype} is supported for the executorch and onnxruntime runtimes, not torch")


def runtime_version(runtime: str) -> str:
    """Installed version of a runtime (for fingerprints)."""
    from importlib.metadata import PackageNotFoundError, version

    dist = {"executorch": "executorch", "onnxruntime": "onnxruntime", "torch": "torch"}[runtime]
    try:
        return version(dist)
    except PackageNotFoundError as exc:
        raise EasrecError(f"runtime: {runtime} is not installed") from exc


def lower(module: nn.Module, example_inputs: Sequence[torch.Tensor], path: str | Path, runtime: str = "executorch",
          dtype: str = "fp32", *, cache: bool | str | Path | None = None, key: str | None = None, **options: Any) -> Path:
    """Export `module(*example_inputs)` to `path` for `runtime` through `lower_file`; returns the path written.

    Shapes are static (batch and length of the example inputs). `options` are `lower_file`'s:
    `calibration` is only used by the int8 ExecuTorch flow (defaults to the example inputs; dynamic
    quantization needs no statistics), `int8_recipe`, `embedding_bits`. `cache` (True:
    `lowering_cache_dir()`, or a folder; off by default) reuses a file lowered before from the same
    content; every option is part of the key. `key` is the content hash when the caller computed it
    already (`content_hash`).
    """
    check(runtime, dtype)
    path = Path(path)
    folder = _cache_folder(cache)
    if folder is None:
        lower_file(module, example_inputs, path, runtime, dtype, **options)
        return path
    key = key or content_hash(module, example_inputs, runtime, dtype, **options)
    cached = folder / (key + SUFFIX[runtime])
    if cached.is_file():
        _copy_atomic(cached, path)
        log.debug("%s: lowered graph %s taken from the cache", path.name, key)
        return path
    lower_file(module, example_inputs, path, runtime, dtype, **options)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _copy_atomic(path, cached)
    except OSError as exc:  # a read-only or full cache must not fail the lowering itself
        log.warning("lowering cache %s: cannot store %s (%s)", folder, cached.name, exc)
    return path


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
CACHE_VERSION = "easrec-lowered-2"


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


def _helper_sources(module_name: str) -> set[str]:
    """Source files of the easrec functions a module imported (a model's blocks call `easrec.model.functional`)."""
    mod = sys.modules.get(module_name)
    out = set()
    for value in vars(mod).values() if mod is not None else ():
        owner = getattr(value, "__module__", None) or ""
        if inspect.isfunction(value) and owner.startswith("easrec.") and owner != module_name:
            try:
                out.add(inspect.getsourcefile(value) or "")
            except TypeError:
                pass
    return out


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
    **options: Any,
) -> str:
    """Hash of everything the lowered file depends on (see the module docstring); 40 hex digits.

    `options` are `lower_file`'s other keywords; their defaults hash as if left out, so the keys of
    graphs lowered before an option existed stay valid.
    """
    h = hashlib.sha1()
    h.update(f"{CACHE_VERSION}|{runtime}|{dtype}|{runtime_version(runtime)}|{torch.__version__}|".encode())
    unknown = sorted(set(options) - set(_OPTION_DEFAULTS))
    if unknown:
        raise TypeError(f"content_hash: unknown lowering option(s) {unknown}")
    changed = {k: v for k, v in sorted(options.items()) if v != _OPTION_DEFAULTS[k]}
    if changed:
        h.update(f"options:{changed!r}|".encode())
    # The exporters next to this file, whether or not this process imported them yet: the key must not
    # depend on what happened to be imported before.
    here = Path(__file__).resolve().parent
    files = {str(here / name) for name in ("lowering.py", "backends.py", "quantize.py", "graph.py")}
    for name, sub in module.named_modules():
        cls = type(sub)
        try:
            files.add(inspect.getsourcefile(cls) or "")
        except TypeError:  # a builtin class
            pass
        files.update(_helper_sources(cls.__module__))
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


def lower_file(
    module: nn.Module,
    example_inputs: Sequence[torch.Tensor],
    path: str | Path,
    runtime: str = "executorch",
    dtype: str = "fp32",
    *,
    calibration: Sequence[Sequence[torch.Tensor]] | None = None,
    int8_recipe: str = "small",
    embedding_bits: int = 8,
) -> dict[str, Any]:
    """The one lowering path: export `module(*example_inputs)` to `path` for `runtime`; returns a report.

    ExecuTorch: torch.export → constant folding → (int8) quantized embedding tables and PT2E linears →
    XNNPACK; ONNX Runtime: torch.onnx (dynamo) → (int8) onnxruntime quantization; torch: torch.export.save.
    The report holds the delegation (ExecuTorch), op counts (ONNX) and which layers stayed fp32 and why.
    """
    check(runtime, dtype)
    check_choice("int8_recipe", int8_recipe, INT8_RECIPES)
    if embedding_bits not in (4, 8):
        raise EasrecError(f"embedding_bits must be 4 or 8, got {embedding_bits!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Frozen: constant propagation turns the weights into constants (no grad-requiring tensors warned about).
    module = module.eval().requires_grad_(False)
    example_inputs = tuple(example_inputs)
    if dtype == "int8-static" and not calibration:
        raise EasrecError("int8-static needs calibration sequences (pass calib=training sequences)")
    try:
        with torch.no_grad():
            if runtime == "executorch":
                return _lower_executorch(module, example_inputs, path, dtype, calibration, int8_recipe, embedding_bits)
            if runtime == "onnxruntime":
                return lower_onnx(module, example_inputs, path, dtype, calibration)
            ep = export_program(module, example_inputs, type(module).__name__)
            with atomic_target(path) as tmp:
                torch.export.save(ep, str(tmp))
            return {"runtime": "torch", "dtype": dtype}
    except EasrecError:
        raise
    except Exception as exc:  # an export failure: one line naming the runtime and the module
        raise EasrecError(f"{path.name}: lowering {type(module).__name__} for {runtime} {dtype} failed: {one_line(exc)}") from exc


# lower_file's keyword options and their defaults (what `content_hash` keys on).
_OPTION_DEFAULTS = {k: p.default for k, p in inspect.signature(lower_file).parameters.items()
                    if p.kind is inspect.Parameter.KEYWORD_ONLY and k != "calibration"}

def export_program(module: nn.Module, example: tuple, what: str = "model"):
    """torch.export (non-strict) with a one-line error that names the failing op where torch says it."""
    try:
        return torch.export.export(module, tuple(example), strict=False)
    except Exception as exc:
        raise EasrecError(f"{what}: torch.export failed: {one_line(exc)}") from exc


def fold_constants(ep):
    """Constant propagation over an exported program: folds SASRec's weight slices, without which
    XNNPACK sees linears with non-constant weights and delegates none of them."""
    from executorch.exir.passes.constant_prop_pass import constant_prop_pass

    return constant_prop_pass(ep)

def executorch_program(
    module: nn.Module,
    example_inputs: Sequence[torch.Tensor],
    dtype: str = "fp32",
    calibration=None,
    int8_recipe: str = "small",
    embedding_bits: int = 8,
):
    """The ATen program the ExecuTorch path lowers, and its quantization report: torch.export →
    constant folding → for int8, causal masks computed in the graph (`compute_causal_masks`), quantized
    embedding tables and PT2E linears, exported again."""
    what = type(module).__name__
    example_inputs = tuple(example_inputs)
    ep = fold_constants(export_program(module, example_inputs, what))
    report: dict[str, Any] = {"dtype": dtype}
    if dtype != "fp32":
        gm = ep.module()
        masks, tables = [], []
        if int8_recipe == "small":
            gm, masks = compute_causal_masks(gm)
            gm, tables = quantize_embeddings(gm, embedding_bits)
        else:
            # Measured (benchmarks/README.md): the portable quantized lookup takes ~25 µs for 200 rows
            # against ~4 µs for the fp32 one, and computing the mask costs ~8 µs; "fast" keeps both fp32.
            report["fp32_kept"] = {"embedding lookups": "the quantized lookup kernel is slower than the fp32 one",
                                   "causal mask": "a constant is faster than computing it"}
        report["causal_masks_computed"] = masks
        if masks or tables:  # traced again: the quantizer needs shapes ("val") on the new nodes
            gm = export_program(gm, example_inputs, f"rewritten {what}").module()
        gm, lin = quantize_linears(gm, example_inputs, dtype, calibration, int8_recipe)
        report.update(lin)
        report["embeddings"] = tables
        ep = export_program(gm, example_inputs, f"quantized {what}")
    return ep, report

def _lower_executorch(module, example_inputs, path: Path, dtype: str, calibration, int8_recipe: str,
                      embedding_bits: int) -> dict[str, Any]:
    ep, quant = executorch_program(module, example_inputs, dtype, calibration, int8_recipe, embedding_bits)
    edge = to_xnnpack(ep)
    try:
        report: dict[str, Any] = delegation_report(edge)
    except Exception as exc:  # devtools missing or API drift: the artifact is still good
        log.debug("delegation info unavailable: %s", exc)
        report = {}
    report["quantization"] = quant
    write_program(edge, path)
    if report:
        log.debug("%s: %d delegated / %d non-delegated ops", path.name, report["delegated_nodes"], report["non_delegated_nodes"])
    return report

def lower_to_temp(module: nn.Module, example_inputs, runtime: str, dtype: str = "fp32", directory: str | Path | None = None) -> Path:
    """`lower` into a fresh temporary file (the caller deletes it)."""
    fd, name = tempfile.mkstemp(suffix=suffix_for(runtime), dir=directory)
    os.close(fd)
    return lower(module, example_inputs, name, runtime, dtype)


def numpy_inputs(example_inputs: Sequence[torch.Tensor]) -> list[Any]:
    """Example inputs as contiguous numpy arrays (what `Device.measure` takes)."""
    return [t.detach().cpu().contiguous().numpy() for t in example_inputs]
