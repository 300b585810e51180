"""Loading a data set by name or path: resolving the spec, reading, filtering, building sequences."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from easrec.data.dataset import Dataset, build_dataset, k_core_mask
from easrec.data.fetch import cached_ratings_path
from easrec.data.readers import read_interactions
from easrec.data.synthetic import synthetic_dataset
from easrec.errors import EasrecError

log = logging.getLogger(__name__)

SYNTHETIC_NAMES = ("synthetic", "synthetic-small")
REAL_NAMES = ("ml-100k", "ml-1m", "ml-20m")
KNOWN_NAMES = SYNTHETIC_NAMES + REAL_NAMES
_DIR_CANDIDATES = ("ratings.dat", "u.data", "ratings.csv")
_FILE_SUFFIXES = (".inter", ".dat", ".data", ".csv", ".tsv", ".parquet", ".pq", ".txt")


def shared_datasets_dir() -> Path:
    """`../shared/datasets` next to the repository checkout."""
    return Path(__file__).resolve().parents[2].parent / "shared" / "datasets"


def _file_in_dir(directory: Path) -> Path:
    inter = sorted(directory.glob("*.inter"))
    if len(inter) == 1:
        return inter[0]
    if len(inter) > 1:
        raise EasrecError(f"{directory}: several .inter files ({', '.join(p.name for p in inter)}); name one")
    for name in _DIR_CANDIDATES:
        if (directory / name).is_file():
            return directory / name
    raise EasrecError(f"{directory}: no *.inter, ratings.dat, u.data or ratings.csv inside")


def resolve(spec: str | Path) -> Path | str:
    """The data file a spec names: a Path for files, directories and MovieLens names; synthetic names as str."""
    text = str(spec)
    path = Path(os.path.expanduser(text))
    if path.is_dir():
        return _file_in_dir(path)
    if path.is_file():
        return path
    if not isinstance(spec, Path) and text in SYNTHETIC_NAMES:
        return text
    if not isinstance(spec, Path) and text in REAL_NAMES:
        if text == "ml-100k":
            shared = shared_datasets_dir() / "ml-100k"
            if shared.is_dir():
                return _file_in_dir(shared)
        cached = cached_ratings_path(text)
        if cached.is_file():
            return cached
        raise EasrecError(f"data set {text} not found at {cached}; run `easrec data fetch {text}` first")
    looks_like_path = isinstance(spec, Path) or os.sep in text or "/" in text or path.suffix.lower() in _FILE_SUFFIXES
    if looks_like_path:
        raise EasrecError(f"data file not found: {path}")
    raise EasrecError(f"unknown data set '{text}' (known: {', '.join(KNOWN_NAMES)}; or give a file path)")


def data_config(spec: str | Path, options: dict | None = None) -> dict:
    """The data part of a run's config.json: the spec (a path made absolute, so any working directory
    reloads it) and the reader/filter options; `load_dataset(cfg["spec"], **cfg["options"])` reloads it."""
    spec = str(spec)
    if Path(spec).exists():
        spec = str(Path(spec).resolve())
    return {"spec": spec, "options": dict(options or {})}


def load_dataset(
    spec: str | Path,
    *,
    user_col: str | None = None,
    item_col: str | None = None,
    time_col: str | None = None,
    rating_col: str | None = None,
    sep: str | None = None,
    min_rating: float | None = None,
    k_core: int = 0,
    seed: int = 0,
) -> Dataset:
    """Load a data set by name or path, filter it and return chronological per-user sequences."""
    import pandas as pd

    if k_core < 0:
        raise EasrecError(f"k_core must be >= 0, got {k_core}")
    target = resolve(spec)
    if isinstance(target, str):
        if target == "synthetic-small":
            ds = synthetic_dataset(n_users=200, n_items=300, mean_len=30, seed=seed)
        else:
            ds = synthetic_dataset(seed=seed)
        if min_rating is not None:
            raise EasrecError(f"{target}: min_rating does not apply (synthetic data has no ratings)")
        if k_core > 1:
            users = np.repeat(np.arange(ds.n_users), ds.lengths())
            items = np.concatenate(ds.sequences)
            keep = k_core_mask(users, items, k_core)
            if not keep.any():
                raise EasrecError(f"{target}: no user left after filtering (k_core={k_core})")
            # Timestamps are implied by the sequence order, so positions serve as times.
            pos = np.arange(len(items))
            raw_items = np.asarray(ds.raw_item_ids, dtype=object)
            raw_users = np.asarray(ds.raw_user_ids, dtype=object)
            ds = build_dataset(target, target, raw_users[users[keep]], raw_items[items[keep]], pos[keep])
        return ds

    path = target
    frame = read_interactions(path, user_col=user_col, item_col=item_col, time_col=time_col,
                              rating_col=rating_col, sep=sep)
    n_read = len(frame)
    if min_rating is not None:
        if "rating" not in frame.columns:
            raise EasrecError(f"{path}: min_rating given but the file has no rating column (pass --rating-col)")
        frame = frame[frame["rating"].to_numpy() >= min_rating]
    if k_core > 1 and len(frame):
        ucodes, _ = pd.factorize(frame["user"].to_numpy(), sort=False)
        icodes, _ = pd.factorize(frame["item"].to_numpy(), sort=False)
        frame = frame[k_core_mask(ucodes, icodes, k_core)]
    if len(frame) == 0:
        raise EasrecError(
            f"{path}: no user left after filtering (min_rating={min_rating}, k_core={k_core}; {n_read} rows read)"
        )
    name = str(spec) if not isinstance(spec, Path) and str(spec) in REAL_NAMES else path.stem
    ds = build_dataset(name, str(path), frame["user"].to_numpy(), frame["item"].to_numpy(), frame["time"].to_numpy())
    log.info("loaded %s: %d users, %d items, %d interactions (%d rows read)",
             path, ds.n_users, ds.n_items, len(frame), n_read)
    return ds
