"""Download the public MovieLens archives into a local cache."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from easrec.errors import EasrecError

log = logging.getLogger(__name__)

BASE_URL = "https://files.grouplens.org/datasets/movielens"
# name -> ratings file inside the extracted archive folder
RATINGS_FILE = {"ml-100k": "u.data", "ml-1m": "ratings.dat", "ml-20m": "ratings.csv"}


def cache_dir(cache: str | os.PathLike | None = None) -> Path:
    """The dataset cache: `cache`, else $EASREC_CACHE, else ~/.cache/easrec/datasets."""
    if cache is not None:
        return Path(cache).expanduser()
    env = os.environ.get("EASREC_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "easrec" / "datasets"


def cached_ratings_path(name: str, cache: str | os.PathLike | None = None) -> Path:
    """Where the ratings file of data set `name` lives once fetched."""
    if name not in RATINGS_FILE:
        raise EasrecError(f"unknown data set to fetch '{name}' (known: {', '.join(RATINGS_FILE)})")
    return cache_dir(cache) / name / RATINGS_FILE[name]


def fetch(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Download and unzip MovieLens `name` into the cache (atomically); return its ratings file path."""
    target = cached_ratings_path(name, cache_dir)
    if target.is_file():
        log.info("%s already in cache: %s", name, target)
        return target
    url = f"{BASE_URL}/{name}.zip"
    root = target.parent.parent
    manual = f"copy {target.name} to {target} by hand"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EasrecError(f"cannot create cache folder {root}: {exc.strerror or exc}") from None
    work = Path(tempfile.mkdtemp(dir=root, prefix=f".fetch-{name}-"))
    try:
        archive = work / f"{name}.zip"
        log.info("downloading %s", url)
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(archive, "wb") as out:
                shutil.copyfileobj(response, out, length=1 << 20)
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise EasrecError(f"cannot download {name} from {url}: {reason}; {manual}") from None
        try:
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(work / "x")
        except (zipfile.BadZipFile, OSError) as exc:
            raise EasrecError(f"cannot unzip {url} (saved as {archive}): {exc}; {manual}") from None
        extracted = work / "x" / name
        if not (extracted / target.name).is_file():
            raise EasrecError(f"archive {url} has no {name}/{target.name}; {manual}")
        # Readers see either no folder or a complete one: rename the finished extraction into place.
        if target.parent.exists():
            shutil.rmtree(target.parent)
        os.replace(extracted, target.parent)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("%s saved to %s", name, target)
    return target
