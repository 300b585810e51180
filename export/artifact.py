"""Exported artifacts: the sidecar metadata file and the runtime predictor (`easrec.export.load`).

The sidecar sits next to the artifact as `FILE.json` (`model.pte` → `model.pte.json`), so several
artifacts can share a folder. It carries the format version, architecture, raw-id mapping, max_len,
k, batch, metrics, versions, the sha256 of the artifact and the most popular items (the answer to
an empty history).
"""

from __future__ import annotations

import hashlib
import logging
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from easrec import __version__
from easrec.errors import EasrecError
from easrec.io import atomic_write_json

log = logging.getLogger(__name__)

SIDECAR_FORMAT = "easrec-artifact"
FORMAT_VERSION = 1
FORMATS = {"executorch": ".pte", "onnx": ".onnx", "pt2": ".pt2"}
RUNTIMES = {"executorch": "executorch", "onnx": "onnxruntime", "pt2": "torch"}
QUANTIZE = ("none", "int8", "int8-static")


@dataclass
class ExportResult:
    """What an exporter wrote: the artifact, its size, and the graph/delegation facts it logged."""

    path: Path
    format: str
    quantize: str
    size_bytes: int
    seconds: float
    k: int
    batch: int
    max_len: int
    report_path: Path | None = None  # FILE.delegation.json (executorch) or FILE.ops.json (onnx)
    report: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        d["report_path"] = str(self.report_path) if self.report_path else None
        return d


def sidecar_path(path: str | Path) -> Path:
    """`model.pte` → `model.pte.json`."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def sha256_file(path: str | Path) -> str:
    """sha256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def runtime_versions(fmt: str) -> dict[str, str]:
    """Versions of easrec, torch, Python and the format's runtime (for the sidecar)."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    out = {"easrec": __version__, "torch": torch.__version__, "python": platform.python_version()}
    dist = RUNTIMES.get(fmt, "torch")
    if dist != "torch":
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "unknown"
    if fmt == "onnx":
        try:
            out["onnx"] = version("onnx")
        except PackageNotFoundError:
            pass
    return out


def write_sidecar(
    result: ExportResult,
    *,
    arch: dict,
    n_items: int,
    items: Sequence[str],
    popular: Sequence[int],
    metrics: dict | None = None,
    parity: dict | None = None,
    source: str | None = None,
    excludes_seen: bool = True,
) -> Path:
    """Write `FILE.json` for an exported artifact (after the artifact itself is in place)."""
    if len(items) != n_items + 1:
        raise EasrecError(f"mapping: {len(items)} raw item ids for a catalogue of {n_items} (+1 padding)")
    meta = {
        "format": SIDECAR_FORMAT,
        "format_version": FORMAT_VERSION,
        "artifact": result.path.name,
        "sha256": sha256_file(result.path),
        "size_bytes": result.path.stat().st_size,
        "runtime": RUNTIMES[result.format],
        "export_format": result.format,
        "quantize": result.quantize,
        "arch": arch,
        "n_items": int(n_items),
        "max_len": int(result.max_len),
        "k": int(result.k),
        "batch": int(result.batch),
        "input": {"name": "ids", "dtype": "int64", "shape": [int(result.batch), int(result.max_len)], "padding": 0, "order": "oldest first, newest last, left padded"},
        "outputs": [{"name": "items", "dtype": "int64", "shape": [int(result.batch), int(result.k)]}, {"name": "scores", "dtype": "float32", "shape": [int(result.batch), int(result.k)]}],
        "excludes_seen": bool(excludes_seen),
        # Which parts are int8 and which stayed fp32 (and why): the lowering's own account.
        "quantization": result.report.get("quantization", {}),
        "mapping": {"items": [str(x) for x in items]},
        "popular": [int(i) for i in popular],
        "metrics": metrics or {},
        "parity": parity or {},
        "versions": runtime_versions(result.format),
        "source": source,
    }
    path = sidecar_path(result.path)
    atomic_write_json(path, meta)
    return path


def read_sidecar(path: str | Path, verify: bool = True) -> dict:
    """Read and check `FILE.json`: format, version, sha256 of the artifact."""
    from easrec.train.checkpoint import read_json

    path = Path(path)
    side = sidecar_path(path)
    if not path.is_file():
        raise EasrecError(f"{path}: artifact not found")
    if not side.is_file():
        raise EasrecError(f"{side}: model metadata not found (export writes it next to the artifact)")
    meta = read_json(side, "model metadata")
    if not isinstance(meta, dict) or meta.get("format") != SIDECAR_FORMAT:
        raise EasrecError(f"{side}: not an easrec artifact description (field 'format' missing or wrong)")
    version = meta.get("format_version")
    if not isinstance(version, int):
        raise EasrecError(f"{side}: field 'format_version' missing")
    if version > FORMAT_VERSION:
        raise EasrecError(
            f"{side}: format_version {version} is newer than this easrec understands ({FORMAT_VERSION}); "
            f"upgrade easrec (artifact made by easrec {meta.get('versions', {}).get('easrec', '?')})"
        )
    for key in ("sha256", "mapping", "max_len", "k", "batch", "popular"):
        if key not in meta:
            raise EasrecError(f"{side}: missing field '{key}'")
    check_sidecar(meta, side)
    if verify:
        digest = sha256_file(path)
        if digest != meta["sha256"]:
            raise EasrecError(
                f"{side}: field 'sha256' does not match {path.name} (file {digest[:12]}…, metadata "
                f"{str(meta['sha256'])[:12]}…): the artifact was changed or the metadata belongs to another file"
            )
    return meta


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_sidecar(meta: dict, side: str | Path) -> None:
    """Raise naming the first sidecar field with the wrong type, range or consistency.

    The sha256 covers the artifact, not the sidecar: a hand-edited `k`, `mapping` or `popular` would
    otherwise reach the runtime as an index error or a silently wrong answer.
    """
    def bad(field: str, why: str) -> EasrecError:
        return EasrecError(f"{side}: field '{field}' {why}", field=field)

    if not isinstance(meta["sha256"], str) or len(meta["sha256"]) != 64 or any(c not in "0123456789abcdef" for c in meta["sha256"]):
        raise bad("sha256", "must be 64 lowercase hex digits")
    for key in ("max_len", "k", "batch"):
        if not _is_int(meta[key]) or meta[key] < 1:
            raise bad(key, f"must be a positive integer, got {meta[key]!r}")
    mapping = meta["mapping"]
    items = mapping.get("items") if isinstance(mapping, dict) else None
    if not isinstance(items, list) or len(items) < 2 or not all(isinstance(x, str) for x in items):
        raise bad("mapping.items", "must be a list of raw item ids (strings), padding first")
    n_items = len(items) - 1
    seen: set[str] = set()
    for raw in items[1:]:
        if raw in seen:
            raise bad("mapping.items", f"repeats the raw id {raw!r} (each id must map to one index)")
        seen.add(raw)
    if "n_items" in meta and (not _is_int(meta["n_items"]) or meta["n_items"] != n_items):
        raise bad("n_items", f"is {meta['n_items']!r} but 'mapping.items' holds {n_items} items")
    if meta["k"] > n_items:
        raise bad("k", f"is {meta['k']} but the catalogue has only {n_items} items")
    popular = meta["popular"]
    if not isinstance(popular, list) or not all(_is_int(i) and 1 <= i <= n_items for i in popular):
        raise bad("popular", f"must be a list of item indices in 1..{n_items}")
    # The graph's shapes are fixed at export; the sidecar's copies must agree with max_len, k and batch.
    io_in = meta.get("input")
    shape = io_in.get("shape") if isinstance(io_in, dict) else None
    if io_in is not None and not isinstance(io_in, dict):
        raise bad("input", "must be an object {name, dtype, shape}")
    if shape is not None and shape != [meta["batch"], meta["max_len"]]:
        raise bad("input.shape", f"is {shape!r} but 'batch' and 'max_len' say {[meta['batch'], meta['max_len']]}")
    outputs = meta.get("outputs")
    if outputs is not None:
        if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
            raise bad("outputs", "must be a list of {name, dtype, shape}")
        for i, out in enumerate(outputs):
            if "shape" in out and out["shape"] != [meta["batch"], meta["k"]]:
                raise bad(f"outputs[{i}].shape", f"is {out['shape']!r} but 'batch' and 'k' say {[meta['batch'], meta['k']]}")
    arch = meta.get("arch")
    if isinstance(arch, dict) and "max_len" in arch and arch["max_len"] != meta["max_len"]:
        raise bad("max_len", f"is {meta['max_len']} but 'arch.max_len' is {arch['max_len']!r}")


class Predictor:
    """An exported artifact loaded in its own runtime, speaking raw item ids."""

    def __init__(self, path: str | Path, threads: int = 1, verify: bool = True):
        from easrec.devices.runners import load_runner

        self.path = Path(path)
        self.meta = read_sidecar(self.path, verify=verify)
        self.max_len = int(self.meta["max_len"])
        self.k = int(self.meta["k"])
        self.batch = int(self.meta["batch"])
        self.raw_items: list[str] = list(self.meta["mapping"]["items"])
        self.index = {raw: i for i, raw in enumerate(self.raw_items) if i > 0}
        self.popular = [int(i) for i in self.meta["popular"]]
        self.runner = load_runner(self.path, threads=threads)
        self.runtime = self.runner.runtime
        self.load_ms = self.runner.load_ms

    def run_ids(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Index-space batch inference: ids [n, max_len] int64 → (items [n, k] int64, scores [n, k])."""
        ids = np.asarray(ids)
        if ids.dtype != np.int64:
            raise EasrecError(f"{self.path.name}: ids have dtype {ids.dtype}, expected int64 (convert with .astype(np.int64))")
        if ids.ndim != 2 or ids.shape[1] != self.max_len:
            raise EasrecError(f"{self.path.name}: ids have shape {tuple(ids.shape)}, expected [n, {self.max_len}]")
        n = ids.shape[0]
        out_i = np.zeros((n, self.k), np.int64)
        out_s = np.zeros((n, self.k), np.float32)
        b = self.batch
        for start in range(0, n, b):
            chunk = ids[start : start + b]
            m = chunk.shape[0]
            if m < b:  # the artifact has a fixed batch: pad with copies of the last row
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], b - m, axis=0)])
            items, scores = self.runner.run([np.ascontiguousarray(chunk)])[:2]
            out_i[start : start + m] = np.asarray(items)[:m]
            out_s[start : start + m] = np.asarray(scores)[:m]
        return out_i, out_s

    def history_indices(self, history: Sequence[str | int]) -> list[int]:
        """Raw ids → catalogue indices, oldest first; unknown ids are skipped with a warning."""
        known, unknown = [], []
        for raw in history:
            idx = self.index.get(str(raw).strip())
            (known if idx is not None else unknown).append(idx if idx is not None else raw)
        if unknown:
            shown = ", ".join(map(str, unknown[:5])) + (" …" if len(unknown) > 5 else "")
            log.warning("%s: %d unknown item id(s) skipped: %s", self.path.name, len(unknown), shown)
        return known

    def encode_history(self, history: Sequence[str | int]) -> np.ndarray:
        """Raw ids → one left-padded int64 row [1, max_len] of the newest max_len known ids."""
        known = self.history_indices(history)[-self.max_len :]
        row = np.zeros((1, self.max_len), np.int64)
        if known:
            row[0, -len(known) :] = known
        return row

    def predict(self, history: Sequence[str | int], k: int | None = None) -> list[tuple[str, float]]:
        """Top-k next items for a history of raw ids (oldest first), none of them in the history: [(raw_id, score), ...].

        The graph reads (and excludes) only the newest max_len ids; older ones it may still rank are
        dropped here, so the answer can hold fewer than k items when the artifact's k leaves no spare.
        """
        k = self.k if k is None else min(int(k), self.k)
        known = self.history_indices(history)
        seen = set(known) if self.meta.get("excludes_seen", True) else set()
        if not known:
            log.info("%s: empty history: answering with the most popular items", self.path.name)
            return [(self.raw_items[i], 0.0) for i in self.popular[:k]]  # score 0.0: not a model score
        row = np.zeros((1, self.max_len), np.int64)
        window = known[-self.max_len :]
        row[0, -len(window) :] = window
        items, scores = self.run_ids(row)
        # Taking from all of the graph's k (not only the first k asked for) refills what the filter drops.
        fresh = [(self.raw_items[int(i)], float(s)) for i, s in zip(items[0], scores[0]) if int(i) not in seen]
        if len(fresh) < k:
            log.warning("%s: %d of the top %d items were in the history before the model's window (%d items);"
                        " returning %d (export with a larger k to always get %d)",
                        self.path.name, self.k - len(fresh), self.k, self.max_len, len(fresh), k)
        return fresh[:k]


def load(path: str | Path, threads: int = 1) -> Predictor:
    """Load an exported `.pte` / `.onnx` / `.pt2` (with its `FILE.json`) as a Predictor."""
    return Predictor(path, threads=threads)
