"""Statistics for accuracy claims: paired bootstrap over users, and mean ± t-interval over seeds.

Two runs evaluated on the same users are compared per user (paired), which removes the spread between
users that dominates an unpaired comparison; several seeds of one configuration are summarised by their
mean, standard deviation and Student-t confidence interval.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from easrec.errors import EasrecError
from easrec.io import read_json
from easrec.train.run import PER_USER_FILE, read_per_user

log = logging.getLogger(__name__)

# Bootstrap resamples are drawn in blocks of about this many indices, so memory stays bounded
# (10,000 resamples of 138k users would otherwise be a 10 GB index matrix).
_BLOCK_ELEMENTS = 4_000_000


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, *, n_boot: int = 10_000, seed: int = 0, confidence: float = 0.95
) -> dict:
    """Paired bootstrap CI of mean(b) − mean(a) over users: means, difference, relative difference, CI, p-value."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise EasrecError(f"paired bootstrap needs two per-user vectors of the same length (got {a.shape} and {b.shape})")
    n = len(a)
    if n == 0:
        raise EasrecError("paired bootstrap: no users")
    if n_boot < 1:
        raise EasrecError(f"--bootstrap must be at least 1, got {n_boot}")
    if not 0 < confidence < 1:
        raise EasrecError(f"confidence must be in (0, 1), got {confidence}")
    diff = b - a
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot, dtype=np.float64)
    block = max(1, _BLOCK_ELEMENTS // n)
    for start in range(0, n_boot, block):
        m = min(block, n_boot - start)
        means[start : start + m] = diff[rng.integers(0, n, size=(m, n))].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    mean_a, mean_b, delta = float(a.mean()), float(b.mean()), float(diff.mean())
    # Two-sided bootstrap p-value for "no difference": how often a resample lands on the other side of 0.
    p = min(1.0, 2.0 * min(float((means <= 0).mean()), float((means >= 0).mean()))) if delta != 0 else 1.0
    includes_zero = bool(low <= 0.0 <= high)
    return {
        "n_users": n,
        "mean_a": mean_a,
        "mean_b": mean_b,
        "diff": delta,
        "rel_diff": delta / mean_a if mean_a != 0 else None,
        "ci_low": float(low),
        "ci_high": float(high),
        "confidence": confidence,
        "bootstrap": int(n_boot),
        "seed": int(seed),
        "p_value": p,
        "includes_zero": includes_zero,
    }


def verdict(result: dict, metric: str = "metric") -> str:
    """One sentence on whether a `paired_bootstrap` result's CI includes 0."""
    pct = round(result["confidence"] * 100)
    ci = f"[{result['ci_low']:+.4f}, {result['ci_high']:+.4f}]"
    if result["includes_zero"]:
        return f"The {pct} % CI of B − A {ci} includes 0: no significant {metric} difference between A and B."
    better = "better" if result["diff"] > 0 else "worse"
    return f"The {pct} % CI of B − A {ci} excludes 0: B is significantly {better} than A on {metric}."


def t_quantile(p: float, df: int) -> float:
    """Quantile `p` of Student's t distribution with `df` degrees of freedom."""
    if not 0 < p < 1:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if df < 1:
        raise ValueError(f"df must be at least 1, got {df}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    # Closed forms for the small df that 2 or 3 seeds give; bisection on the CDF otherwise.
    if df == 1:
        return math.tan(math.pi * (p - 0.5))
    if df == 2:
        return (2 * p - 1) / math.sqrt(2 * p * (1 - p))
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def cdf(x: float) -> float:
        grid = np.linspace(0.0, x, 4001)
        dens = np.exp(log_c - (df + 1) / 2 * np.log1p(grid**2 / df))
        h = x / 4000
        return 0.5 + h / 3 * (dens[0] + dens[-1] + 4 * dens[1:-1:2].sum() + 2 * dens[2:-1:2].sum())

    lo, hi = 0.0, 1.0
    while cdf(hi) < p:
        lo, hi = hi, hi * 2
    for _ in range(60):
        mid = (lo + hi) / 2
        if cdf(mid) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def mean_ci_over_seeds(values, confidence: float = 0.95) -> dict:
    """Mean, sample std and Student-t confidence interval of one metric over seeds."""
    v = np.asarray(list(values), dtype=np.float64)
    if v.ndim != 1 or len(v) == 0:
        raise EasrecError("mean over seeds: no values")
    n = len(v)
    mean = float(v.mean())
    if n == 1:
        return {"n": 1, "mean": mean, "std": None, "ci_low": None, "ci_high": None, "confidence": confidence,
                "values": v.tolist()}
    std = float(v.std(ddof=1))
    half = t_quantile(1 - (1 - confidence) / 2, n - 1) * std / math.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half, "confidence": confidence,
            "values": v.tolist()}


# --- comparing run directories ------------------------------------------------------------------------

# Fingerprint fields that must agree for a paired comparison, most telling first. The data set's name
# and spec are not compared: the same file reached by two paths (or by name) is the same data.
_SAME_DATA = ("users", "items", "interactions", "eval_users", "targets_sha256")
_SAME_EVAL = ("split", "protocol", "keep_seen")


def expand_runs(paths) -> list:
    """Run directories named by `paths`: a run (with per_user.json) or a multi-seed folder (seeds.json / seed-*)."""

    runs: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise EasrecError(f"{path}: run directory not found")
        if (path / PER_USER_FILE).is_file() or path.is_file():
            runs.append(path)
        elif (path / "seeds.json").is_file():
            listed = read_json(path / "seeds.json", "seed summary").get("runs", [])
            runs.extend(path / Path(r).name for r in listed)
        elif sorted(path.glob(f"seed-*/{PER_USER_FILE}")):
            runs.extend(p.parent for p in sorted(path.glob(f"seed-*/{PER_USER_FILE}")))
        else:
            runs.append(path)  # read_per_user names the missing file
    return runs


def _check_same(ref: dict, ref_run, other: dict, other_run) -> None:
    for key in _SAME_DATA:
        if ref["data"].get(key) != other["data"].get(key):
            raise EasrecError(
                f"{other_run}: field 'data.{key}' is {other['data'].get(key)!r} but {ref['data'].get(key)!r} in {ref_run}:"
                " the runs are on different data sets or splits")
    for key in _SAME_EVAL:
        if ref.get(key) != other.get(key):
            raise EasrecError(f"{other_run}: field '{key}' is {other.get(key)!r} but {ref.get(key)!r} in {ref_run}:"
                              " the runs were evaluated differently")
    if ref["users"] != other["users"]:
        raise EasrecError(f"{other_run}: field 'users' differs from {ref_run}: the runs evaluated different users")


def compare_runs(runs_a, runs_b, *, metric: str = "ndcg@10", n_boot: int = 10_000, seed: int = 0) -> dict:
    """Paired bootstrap of B − A on per-user `metric` (each side averaged over its runs), with mean ± std over seeds."""
    sides = {}
    ref = ref_run = None
    for name, paths in (("a", runs_a), ("b", runs_b)):
        runs = expand_runs(paths)
        if not runs:
            raise EasrecError(f"side {name.upper()}: no run given")
        values, means = [], []
        for run in runs:
            rec = read_per_user(run)
            if ref is None:
                ref, ref_run = rec, run
            else:
                _check_same(ref, ref_run, rec, run)
            if metric not in rec["metrics"]:
                raise EasrecError(f"{run}: no per-user metric '{metric}' (have: {', '.join(rec['metrics'])})")
            v = np.asarray(rec["metrics"][metric], dtype=np.float64)
            values.append(v)
            means.append(float(v.mean()))
        sides[name] = {"runs": [str(r) for r in runs], "per_user": np.mean(values, axis=0),
                       "seeds": mean_ci_over_seeds(means)}
    result = paired_bootstrap(sides["a"]["per_user"], sides["b"]["per_user"], n_boot=n_boot, seed=seed)
    data = {k: ref["data"].get(k) for k in ("name", "users", "items", "interactions", "eval_users")}
    return {
        "metric": metric,
        "data": data,
        "keep_seen": ref["keep_seen"],
        "a": {k: v for k, v in sides["a"].items() if k != "per_user"},
        "b": {k: v for k, v in sides["b"].items() if k != "per_user"},
        **result,
        "verdict": verdict(result, metric),
    }
