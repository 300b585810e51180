"""Exported artifacts: the sidecar metadata file and the runtime predictor (`easrec.export.load`).

The sidecar sits next to the artifact as `FILE.json` (`model.pte` → `model.pte.json`), so several
artifacts can share a folder. It carries the format version, architecture, raw-id mapping, max_len,
k, batch, metrics, versions, the sha256 of the artifact and the most popular items (the answer to
an empty history).
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from easrec import __version__
from easrec.errors import EasrecError, atomic_write_json

log = logging.getLogger(__name__)

SIDECAR_FORMAT = "easrec-artifact"
FORMAT_VERSION = 1
FORMATS = {"executorch": ".pte", "onnx": ".onnx"}
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
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextmanager
def temp_target(path: Path, suffix: str) -> Iterator[Path]:
    """A temporary file in `path`'s folder; renamed onto `path` on success, removed on failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=suffix)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o644 & ~umask)  # mkstemp makes 0600; an artifact is an ordinary file
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def runtime_versions(fmt: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    import torch

    out = {"easrec": __version__, "torch": torch.__version__, "python": platform.python_version()}
    dist = "executorch" if fmt == "executorch" else "onnxruntime"
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
        "runtime": "executorch" if result.format == "executorch" else "onnxruntime",
        "export_format": result.format,
        "quantize": result.quantize,
        "arch": arch,
        "n_items": int(n_items),
        "max_len": int(result.max_len),
        "k": int(result.k),
        "batch": int(result.batch),
        "input": {"name": "ids", "dtype": "int64", "shape": [int(result.batch), int(result.max_len)], "padding": 0, "order": "oldest first, newest last, left padded"},
        "outputs": [{"name": "items", "dtype": "int64", "shape": [int(result.batch), int(result.k)]}, {"name": "scores", "dtype": "float32", "shape": [int(result.batch), int(result.k)]}],
        "excludes_seen": True,
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
    if verify:
        digest = sha256_file(path)
        if digest != meta["sha256"]:
            raise EasrecError(
                f"{side}: field 'sha256' does not match {path.name} (file {digest[:12]}…, metadata "
                f"{str(meta['sha256'])[:12]}…): the artifact was changed or the metadata belongs to another file"
            )
    return meta


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

    def encode_history(self, history: Sequence[str | int]) -> np.ndarray:
        """Raw ids → one left-padded int64 row [1, max_len]; unknown ids are skipped with a warning."""
        known, unknown = [], []
        for raw in history:
            idx = self.index.get(str(raw).strip())
            (known if idx is not None else unknown).append(idx if idx is not None else raw)
        if unknown:
            shown = ", ".join(map(str, unknown[:5])) + (" …" if len(unknown) > 5 else "")
            log.warning("%s: %d unknown item id(s) skipped: %s", self.path.name, len(unknown), shown)
        known = known[-self.max_len :]
        row = np.zeros((1, self.max_len), np.int64)
        if known:
            row[0, -len(known) :] = known
        return row

    def predict(self, history: Sequence[str | int], k: int | None = None) -> list[tuple[str, float]]:
        """Top-k next items for a history of raw ids (oldest first): [(raw_id, score), ...]."""
        k = self.k if k is None else min(int(k), self.k)
        row = self.encode_history(history)
        if not row.any():
            log.info("%s: empty history: answering with the most popular items", self.path.name)
            return [(self.raw_items[i], 0.0) for i in self.popular[:k]]  # score 0.0: not a model score
        items, scores = self.run_ids(row)
        return [(self.raw_items[int(i)], float(s)) for i, s in zip(items[0, :k], scores[0, :k])]


def load(path: str | Path, threads: int = 1) -> Predictor:
    """Load an exported `.pte` / `.onnx` (with its `FILE.json`) as a Predictor."""
    return Predictor(path, threads=threads)
