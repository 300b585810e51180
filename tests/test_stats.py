"""Tests of easrec.train.stats: paired bootstrap over users, Student-t intervals over seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from easrec.errors import EasrecError
from easrec.train.stats import mean_ci_over_seeds, paired_bootstrap, t_quantile, verdict


def test_identical_runs_give_zero_interval():
    a = np.random.default_rng(0).random(500)
    r = paired_bootstrap(a, a.copy(), n_boot=2000)
    assert r["ci_low"] == 0.0 and r["ci_high"] == 0.0 and r["diff"] == 0.0
    assert r["includes_zero"] and r["p_value"] == 1.0 and r["rel_diff"] == 0.0
    assert "includes 0" in verdict(r, "ndcg@10")


def test_known_difference_is_covered_and_zero_excluded():
    rng = np.random.default_rng(1)
    a = rng.random(2000)
    b = a + 0.05 + rng.normal(0, 0.1, 2000)  # true mean difference 0.05, standard error ~0.0022
    r = paired_bootstrap(a, b, n_boot=5000, seed=3)
    assert r["ci_low"] < 0.05 < r["ci_high"]
    assert r["ci_low"] > 0.0 and not r["includes_zero"] and r["p_value"] < 0.001
    assert r["diff"] == pytest.approx(b.mean() - a.mean())
    assert r["rel_diff"] == pytest.approx((b.mean() - a.mean()) / a.mean())
    # Width close to the normal theory: 2 * 1.96 * sd(diff) / sqrt(n).
    expected = 2 * 1.96 * np.std(b - a, ddof=1) / math.sqrt(len(a))
    assert r["ci_high"] - r["ci_low"] == pytest.approx(expected, rel=0.1)
    assert "B is significantly better" in verdict(r, "ndcg@10")
    worse = paired_bootstrap(b, a, n_boot=2000)
    assert worse["ci_high"] < 0 and "worse" in verdict(worse)


def test_bootstrap_coverage_is_about_95_percent():
    # Over many simulated pairs with a known difference of 0.02 the interval covers it ~95 % of the time.
    rng = np.random.default_rng(7)
    covered = 0
    trials = 200
    for t in range(trials):
        a = rng.random(300)
        b = a + 0.02 + rng.normal(0, 0.2, 300)
        r = paired_bootstrap(a, b, n_boot=1000, seed=t)
        covered += r["ci_low"] <= 0.02 <= r["ci_high"]
    assert 0.88 <= covered / trials <= 0.99


def test_bootstrap_deterministic_and_blocked(monkeypatch):
    rng = np.random.default_rng(2)
    a, b = rng.random(100), rng.random(100)
    r1 = paired_bootstrap(a, b, n_boot=3000, seed=5)
    assert r1 == paired_bootstrap(a, b, n_boot=3000, seed=5)
    # Drawing the resamples in small blocks (as for very many users) gives the same stream.
    import easrec.train.stats as stats

    monkeypatch.setattr(stats, "_BLOCK_ELEMENTS", 700)
    assert paired_bootstrap(a, b, n_boot=3000, seed=5) == r1


def test_bootstrap_bad_input():
    with pytest.raises(EasrecError, match="same length"):
        paired_bootstrap(np.zeros(3), np.zeros(4))
    with pytest.raises(EasrecError, match="no users"):
        paired_bootstrap(np.zeros(0), np.zeros(0))
    with pytest.raises(EasrecError, match="--bootstrap"):
        paired_bootstrap(np.zeros(3), np.zeros(3), n_boot=0)


@pytest.mark.parametrize("df, q", [(1, 12.7062047), (2, 4.3026527), (3, 3.1824463), (4, 2.7764451),
                                   (9, 2.2621572), (29, 2.0452296), (200, 1.9718962)])
def test_t_quantile_known_values(df, q):
    assert t_quantile(0.975, df) == pytest.approx(q, rel=1e-6)
    assert t_quantile(0.025, df) == pytest.approx(-q, rel=1e-6)


def test_mean_ci_over_seeds():
    r = mean_ci_over_seeds([1.0, 2.0, 3.0])
    assert r["n"] == 3 and r["mean"] == 2.0 and r["std"] == pytest.approx(1.0)
    half = 4.3026527 / math.sqrt(3)
    assert r["ci_low"] == pytest.approx(2 - half) and r["ci_high"] == pytest.approx(2 + half)
    one = mean_ci_over_seeds([0.06])
    assert one["mean"] == 0.06 and one["std"] is None and one["ci_low"] is None
    same = mean_ci_over_seeds([0.5, 0.5])
    assert same["ci_low"] == same["ci_high"] == 0.5
    with pytest.raises(EasrecError):
        mean_ci_over_seeds([])
