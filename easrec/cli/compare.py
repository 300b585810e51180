"""`easrec compare`: is run B really better than run A? A paired bootstrap over users."""

from __future__ import annotations

import argparse
from pathlib import Path

from easrec.cli.common import add_json_flag, emit
from easrec.errors import EasrecError


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `compare` command."""
    p = sub.add_parser(
        "compare", help="paired bootstrap CI of the difference between two runs (or two groups of seeds)",
        description="Compare the per-user test metrics of run B with run A: both means, the relative difference and a "
                    "paired bootstrap confidence interval of mean(B) - mean(A) over users. With several runs per side "
                    "(--a ... --b ...), each user's metric is averaged over the side's seeds first. A folder written by "
                    "`easrec train --seeds N` stands for all its seeds.")
    p.add_argument("runs", nargs="*", type=Path, metavar="RUN", help="RUN_A RUN_B")
    p.add_argument("--a", nargs="+", type=Path, metavar="RUN", help="side A: one or more runs (seeds)")
    p.add_argument("--b", nargs="+", type=Path, metavar="RUN", help="side B: one or more runs (seeds)")
    p.add_argument("--metric", default="ndcg@10", help="per-user metric: hr|ndcg|mrr @ 5|10|20 (default ndcg@10)")
    p.add_argument("--bootstrap", type=int, default=10_000, help="bootstrap resamples (default 10000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling")
    add_json_flag(p)
    p.set_defaults(func=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> dict:
    """Compare two runs (or two groups of runs) and print the verdict."""
    from easrec.train.stats import compare_runs

    if args.runs and (args.a or args.b):
        raise EasrecError("give either RUN_A RUN_B or --a RUN... --b RUN..., not both")
    if args.runs:
        if len(args.runs) != 2:
            raise EasrecError(f"compare needs exactly two runs RUN_A RUN_B (got {len(args.runs)}); use --a/--b for seeds")
        side_a, side_b = [args.runs[0]], [args.runs[1]]
    else:
        if not args.a or not args.b:
            raise EasrecError("compare needs RUN_A RUN_B, or both --a RUN... and --b RUN...")
        side_a, side_b = args.a, args.b
    r = compare_runs(side_a, side_b, metric=args.metric, n_boot=args.bootstrap, seed=args.seed)
    m = r["metric"]

    def side(s: dict) -> str:
        seeds = s["seeds"]
        if seeds["n"] == 1:
            return f"{seeds['mean']:.4f}  ({s['runs'][0]})"
        return f"{seeds['mean']:.4f} ± {seeds['std']:.4f} over {seeds['n']} seeds"

    rel = f"{r['rel_diff'] * 100:+.1f} %" if r["rel_diff"] is not None else "n/a"
    rows = [
        ("data", f"{r['data']['name']}: {r['n_users']} users evaluated, {r['data']['items']} items"
                 f"{', seen items kept' if r['keep_seen'] else ', seen items excluded'}"),
        (f"A {m}", side(r["a"])),
        (f"B {m}", side(r["b"])),
        ("B − A", f"{r['diff']:+.4f} ({rel})"),
        (f"{round(r['confidence'] * 100)} % CI (paired bootstrap, {r['bootstrap']})", f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]"),
        ("p (two-sided)", f"{r['p_value']:.4f}"),
        ("verdict", r["verdict"]),
    ]
    return emit(args, r, f"compare {m}: B vs A", rows)
