"""Parsers for interaction files: RecBole atomic `.inter`, MovieLens `ratings.dat` / `u.data`, CSV/TSV/Parquet,
and the SASRec text format (`user item` per line in time order, no timestamp).

Every reader returns a DataFrame with string columns ``user`` and ``item``, a numeric ``time`` column and,
when the file has one, a numeric ``rating`` column, in file order.
"""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from easrec.errors import EasrecError

log = logging.getLogger(__name__)

# Column names tried, in order, when the user names none: RecBole/easrec style first, then the
# MovieLens-20M CSV spelling (userId, movieId) so `ratings.csv` from the fetch cache loads unchanged.
USER_ALIASES = ("user_id", "userId", "user", "uid")
ITEM_ALIASES = ("item_id", "itemId", "movieId", "item", "iid")
TIME_ALIASES = ("timestamp", "time", "ts")
RATING_ALIASES = ("rating", "score")

_MOVIELENS_COLS = ["user", "item", "rating", "time"]


def detect_format(path: Path) -> str:
    """Return one of ``inter``, ``ml-dat``, ``ml-udata``, ``csv``, ``tsv``, ``parquet``, ``sasrec-txt`` for `path`."""
    name = path.name.lower()
    suffix = path.suffix.lower()
    if suffix == ".inter":
        return "inter"
    if suffix == ".txt":
        return "sasrec-txt"
    if suffix == ".parquet" or suffix == ".pq":
        return "parquet"
    if suffix == ".csv":
        return "csv"
    if suffix == ".tsv":
        return "tsv"
    if name == "u.data":
        return "ml-udata"
    if name == "ratings.dat":
        return "ml-dat"
    # Unknown name: decide from the first non-blank line.
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as exc:
        raise EasrecError(f"cannot read data file {path}: {exc.strerror or exc}") from None
    if head.startswith(b"PAR1"):
        return "parquet"
    first = next((ln for ln in head.decode("utf-8", "replace").splitlines() if ln.strip()), "")
    if "::" in first:
        return "ml-dat"
    if ":token" in first or ":float" in first:
        return "inter"
    fields = first.split("\t")
    if len(fields) == 4 and all(_is_number(x) for x in fields):
        return "ml-udata"
    if "\t" in first:
        return "tsv"
    if "," in first:
        return "csv"
    raise EasrecError(
        f"unknown data format for {path}: expected .inter, ratings.dat, u.data, .csv, .tsv, .parquet or .txt (SASRec)"
    )


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_interactions(
    path: Path,
    *,
    user_col: str | None = None,
    item_col: str | None = None,
    time_col: str | None = None,
    rating_col: str | None = None,
    sep: str | None = None,
) -> pd.DataFrame:
    """Parse `path` into a frame with columns user, item, time (and rating when present)."""
    path = Path(path)
    if not path.is_file():
        raise EasrecError(f"data file not found: {path}")
    fmt = detect_format(path)
    log.debug("reading %s as %s", path, fmt)
    if fmt == "sasrec-txt":
        return read_sasrec_txt(path)
    names = {"user": user_col, "item": item_col, "time": time_col, "rating": rating_col}
    # Ids stay strings ("007" is not 7); time and rating go through the C parser's fast numeric
    # inference, and only a column that fails it is re-checked value by value for the error line.
    na = {"keep_default_na": False, "na_values": [""]}
    try:
        if fmt in ("ml-dat", "ml-udata"):
            if fmt == "ml-dat":
                # The C parser takes single-character separators only; swapping "::" for a tab keeps
                # line numbers and is ~10x faster than the python engine on ML-1M.
                source = io.BytesIO(path.read_bytes().replace(b"::", b"\t"))
                field_sep = "\t"
            else:
                source, field_sep = path, sep or "\t"
            frame = pd.read_csv(source, sep=field_sep, header=None, dtype={0: str, 1: str}, **na)
            frame = _positional(frame, path)
            return _clean(frame, path, has_header=False, is_parquet=False)
        if fmt == "parquet":
            frame = pd.read_parquet(path)
            raw_cols = [str(c) for c in frame.columns]
            frame.columns = raw_cols
            mapping = _mapping(raw_cols, names, path)
        else:
            field_sep = sep or {"inter": "\t", "tsv": "\t", "csv": ","}[fmt]
            raw_cols = [str(c) for c in pd.read_csv(path, sep=field_sep, nrows=0).columns]
            # RecBole headers carry the type after a colon: "user_id:token".
            clean_cols = [c.split(":", 1)[0] for c in raw_cols] if fmt == "inter" else raw_cols
            mapping = _mapping(clean_cols, names, path)
            raw_of = dict(zip(clean_cols, raw_cols))
            wanted = [raw_of[c] for c in mapping.values()]
            frame = pd.read_csv(path, sep=field_sep, usecols=wanted,
                                dtype={raw_of[mapping["user"]]: str, raw_of[mapping["item"]]: str}, **na)
            frame.columns = [c.split(":", 1)[0] for c in frame.columns] if fmt == "inter" else list(frame.columns)
    except EasrecError:
        raise
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError, OSError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EasrecError(f"cannot parse {path} as {fmt}: {reason}") from None
    frame = frame[list(mapping.values())]
    frame.columns = list(mapping.keys())
    return _clean(frame, path, has_header=True, is_parquet=fmt == "parquet")


def read_sasrec_txt(path: Path) -> pd.DataFrame:
    """The original SASRec data format: `user item` (integers, whitespace separated) per line, in time order.

    There is no timestamp: the line index serves as the time, so the stable sort by time keeps file order.
    """
    path = Path(path)
    try:
        # Three columns so that a line with three fields parses (and is reported) instead of
        # shifting the rest of the file; four or more make the C parser raise with the line number.
        frame = pd.read_csv(path, sep=r"\s+", header=None, names=[0, 1, 2], dtype=str, keep_default_na=False,
                            na_values=[""], engine="c")
    except pd.errors.EmptyDataError:
        raise EasrecError(f"{path}: no interactions") from None
    except pd.errors.ParserError as exc:
        m = re.search(r"line (\d+), saw (\d+)", str(exc))
        if m:
            raise EasrecError(f"{path}:{m.group(1)}: expected 2 fields (user item), found {m.group(2)}") from None
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EasrecError(f"cannot parse {path} as sasrec-txt: {reason}") from None
    except (UnicodeDecodeError, OSError) as exc:
        raise EasrecError(f"cannot parse {path} as sasrec-txt: {exc}") from None
    if len(frame) == 0:
        raise EasrecError(f"{path}: no interactions")
    three = frame[2].notna().to_numpy()
    one = frame[1].isna().to_numpy()
    bad = three | one
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise EasrecError(f"{_where(path, row, False, False)}: expected 2 fields (user item), found {3 if three[row] else 1}")
    for col, what in ((0, "user"), (1, "item")):
        ok = frame[col].str.fullmatch(r"[+-]?\d+").to_numpy(dtype=bool)
        if not ok.all():
            row = int(np.flatnonzero(~ok)[0])
            raise EasrecError(f"{_where(path, row, False, False)}: {what} id '{frame[col].iloc[row]}' is not an integer")
    return pd.DataFrame({"user": frame[0].to_numpy(dtype=str), "item": frame[1].to_numpy(dtype=str),
                         "time": np.arange(len(frame), dtype=np.int64)})


def _mapping(columns: list[str], names: dict[str, str | None], path: Path) -> dict[str, str]:
    """Our field -> the file's column, from the names given or the usual aliases."""
    mapping = {
        "user": _pick(columns, names["user"], USER_ALIASES, "user", path),
        "item": _pick(columns, names["item"], ITEM_ALIASES, "item", path),
        "time": _pick(columns, names["time"], TIME_ALIASES, "time", path),
    }
    rating = _pick(columns, names["rating"], RATING_ALIASES, "rating", path, required=names["rating"] is not None)
    if rating is not None:
        mapping["rating"] = rating
    if len(set(mapping.values())) != len(mapping):
        raise EasrecError(f"{path}: one column serves two fields ({mapping})")
    return mapping


def _positional(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    if frame.shape[1] < 4:
        raise EasrecError(
            f"{path}: expected 4 fields per line (user, item, rating, timestamp), found {frame.shape[1]}"
        )
    frame = frame.iloc[:, :4].copy()
    frame.columns = _MOVIELENS_COLS
    return frame


def _pick(columns: list[str], given: str | None, aliases: tuple[str, ...], field: str, path: Path,
          required: bool = True) -> str | None:
    if given is not None:
        if given in columns:
            return given
        raise EasrecError(f"{path}: no {field} column '{given}' in header (columns found: {', '.join(columns)})")
    for alias in aliases:
        if alias in columns:
            return alias
    if not required:
        return None
    raise EasrecError(
        f"{path}: no {field} column in header (tried {', '.join(aliases)}; columns found: {', '.join(columns)};"
        f" pass --{field}-col)"
    )


def _clean(frame: pd.DataFrame, path: Path, *, has_header: bool, is_parquet: bool) -> pd.DataFrame:
    """Check ids and convert time/rating to numbers, naming the line of the first bad value."""
    out = pd.DataFrame(index=pd.RangeIndex(len(frame)))
    for col in ("user", "item"):
        values = frame[col]
        if not pd.api.types.is_string_dtype(values) and not pd.api.types.is_object_dtype(values):
            values = values.astype("string")
        missing = values.isna().to_numpy()
        if missing.any():
            row = int(np.flatnonzero(missing)[0])
            raise EasrecError(f"{_where(path, row, has_header, is_parquet)}: empty {col} id")
        out[col] = values.astype(str).to_numpy()
    out["time"] = _numeric(frame["time"], "timestamp", path, has_header, is_parquet)
    if "rating" in frame.columns:
        out["rating"] = _numeric(frame["rating"], "rating", path, has_header, is_parquet)
    return out


def _numeric(values: pd.Series, what: str, path: Path, has_header: bool, is_parquet: bool) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(values):
        # Parquet may store real datetimes; seconds since the epoch keep the order.
        return values.astype("int64").to_numpy() // 1_000_000_000
    if pd.api.types.is_numeric_dtype(values) and not values.isna().any():
        return values.to_numpy()
    numbers = pd.to_numeric(values, errors="coerce")
    bad = numbers.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raw = values.iloc[row]
        shown = "" if raw is None or (isinstance(raw, float) and np.isnan(raw)) else str(raw)
        raise EasrecError(f"{_where(path, row, has_header, is_parquet)}: non-numeric {what} '{shown}'")
    return numbers.to_numpy()


def _where(path: Path, row: int, has_header: bool, is_parquet: bool) -> str:
    """`path:line` for data row `row` (0-based); pandas skips blank lines, so count them back in."""
    if is_parquet:
        return f"{path}: row {row + 1}"
    target = row + (1 if has_header else 0)
    seen = -1
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, start=1):
            if line.strip(b"\r\n"):
                seen += 1
                if seen == target:
                    return f"{path}:{lineno}"
    return f"{path}:{row + 1 + int(has_header)}"
