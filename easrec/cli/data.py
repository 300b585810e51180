"""`easrec data`: inspect and fetch data sets."""

from __future__ import annotations

import argparse

from easrec.cli.common import add_json_flag, emit
from easrec.cli.types import finite_float, nonneg_int


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `data` command group (`stats`, `fetch`)."""
    group = subparsers.add_parser("data", help="inspect and fetch data sets")
    sub = group.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)

    stats = sub.add_parser("stats", help="users, items, interactions and sequence lengths of a data set")
    stats.add_argument("data", metavar="DATA", help="a file, a folder, or a name (synthetic, ml-100k, ...)")
    add_data_options(stats)
    add_json_flag(stats)
    stats.set_defaults(func=stats_command)

    fetch = sub.add_parser("fetch", help="download a MovieLens archive into the cache")
    fetch.add_argument("name", metavar="NAME", choices=["ml-100k", "ml-1m", "ml-20m"], help="ml-100k, ml-1m or ml-20m")
    fetch.add_argument("--cache", metavar="DIR", default=None, help="cache folder (default: $EASREC_CACHE or ~/.cache/easrec/datasets)")
    add_json_flag(fetch)
    fetch.set_defaults(func=fetch_command)


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """Column, separator and filter options shared by every command that loads data."""
    parser.add_argument("--user-col", default=None, help="user column of a CSV/TSV/Parquet file")
    parser.add_argument("--item-col", default=None, help="item column")
    parser.add_argument("--time-col", default=None, help="timestamp column")
    parser.add_argument("--rating-col", default=None, help="rating column")
    parser.add_argument("--sep", default=None, help="field separator of a CSV/TSV file")
    parser.add_argument("--min-rating", type=finite_float, default=None, help="keep interactions with rating >= this")
    parser.add_argument("--k-core", type=nonneg_int, default=0, help="keep users and items with >= K interactions")
    parser.add_argument("--seed", type=nonneg_int, default=0, help="seed of the synthetic generator")


def data_kwargs(args: argparse.Namespace) -> dict:
    """The `load_dataset` keyword arguments from options added by `add_data_options`."""
    return {
        "user_col": args.user_col, "item_col": args.item_col, "time_col": args.time_col,
        "rating_col": args.rating_col, "sep": args.sep, "min_rating": args.min_rating,
        "k_core": args.k_core, "seed": args.seed,
    }


def stats_command(args: argparse.Namespace) -> dict:
    """Load the data set and report its statistics."""
    from easrec.data import load_dataset

    ds = load_dataset(args.data, **data_kwargs(args))
    result = ds.stats()
    seq = result["seq_len"]
    rows = [
        ("source", result["source"]),
        ("users", result["users"]),
        ("items", result["items"]),
        ("interactions", result["interactions"]),
        ("density", result["density"]),
        ("eval users", result["eval_users"]),
        ("length min / p50 / p90 / max", f"{seq['min']} / {seq['p50']:g} / {seq['p90']:g} / {seq['max']}"),
        ("length mean", seq["mean"]),
    ]
    return emit(args, result, title=f"data set {result['name']}", rows=rows)


def fetch_command(args: argparse.Namespace) -> dict:
    """Download the archive (or find it in the cache) and report the ratings file."""
    from easrec.data.fetch import cache_dir, cached_ratings_path, fetch
    from easrec.io import ensure_writable

    if not cached_ratings_path(args.name, args.cache).is_file():  # a cached copy is read, not written
        ensure_writable(cache_dir(args.cache), field="--cache")
    path = fetch(args.name, args.cache)
    result = {"name": args.name, "path": str(path)}
    return emit(args, result, title=f"{args.name}: {path}", rows=[("name", args.name), ("ratings file", str(path))])
