"""A seeded generator of interaction sequences with the structure real data has.

What a sequential model can exploit, and popularity cannot:
  * item popularity follows a power law (Zipf), inside topics;
  * each user has a few topic interests; the current topic switches among them now and then, and the
    interests themselves drift (one is replaced with a new topic with a small probability per step);
  * short range: the next item is the fixed successor ``succ[prev]`` with probability ``p_succ``;
  * long range: with probability ``p_return`` the user goes back to the item seen 30-80 steps earlier
    (and to its topic), so windows longer than ~30 carry signal that short windows miss.
"""

from __future__ import annotations

import logging

import numpy as np

from easrec.data.dataset import Dataset, build_dataset
from easrec.errors import EasrecError

log = logging.getLogger(__name__)

MIN_LEN = 5
MAX_LEN = 300


def synthetic_dataset(
    n_users: int = 2000,
    n_items: int = 1000,
    mean_len: int = 60,
    seed: int = 0,
    *,
    p_succ: float = 0.3,
    p_return: float = 0.15,
    p_noise: float = 0.05,
    p_switch: float = 0.04,
    p_drift: float = 0.005,
    n_interests: int = 3,
) -> Dataset:
    """Generate a deterministic synthetic data set (Zipf popularity, drifting topics, short/long-range links)."""
    if n_users < 1 or n_items < 2 or mean_len < 1:
        raise EasrecError(f"synthetic: need n_users >= 1, n_items >= 2, mean_len >= 1 (got {n_users}, {n_items}, {mean_len})")
    if p_succ + p_return + p_noise > 1:
        raise EasrecError("synthetic: p_succ + p_return + p_noise must be <= 1")
    rng = np.random.default_rng(seed)

    # Items: Zipf weights over a random popularity ranking, grouped into balanced topics.
    n_topics = max(2, n_items // 40)
    item_topic = rng.permutation(n_items) % n_topics
    weight = (rng.permutation(n_items) + 1.0) ** -1.1
    by_topic = np.argsort(item_topic, kind="stable")
    topic_sizes = np.bincount(item_topic, minlength=n_topics)
    topic_start = np.concatenate([[0], np.cumsum(topic_sizes)[:-1]])
    # Sampling inside a topic by weight: keys run from t to t+1 across topic t's items, so
    # searchsorted(keys, t + u) with u ~ U[0, 1) lands on an item of topic t.
    w_sorted = weight[by_topic]
    t_sorted = item_topic[by_topic]
    topic_mass = np.bincount(t_sorted, weights=w_sorted, minlength=n_topics)
    within = np.cumsum(w_sorted) - np.repeat(np.cumsum(topic_mass) - topic_mass, topic_sizes)
    topic_keys = t_sorted + within / topic_mass[t_sorted]
    topic_keys[np.cumsum(topic_sizes) - 1] = np.arange(n_topics) + 1.0
    global_keys = np.cumsum(weight) / weight.sum()
    global_keys[-1] = 1.0
    topic_weight = (rng.permutation(n_topics) + 1.0) ** -0.7
    topic_cdf = np.cumsum(topic_weight) / topic_weight.sum()
    topic_cdf[-1] = 1.0

    # A fixed successor per item, uniform inside its topic (so it is not just the popular item).
    succ = by_topic[topic_start[item_topic] + rng.integers(0, topic_sizes[item_topic])]
    pos_in_topic = np.empty(n_items, dtype=np.int64)
    pos_in_topic[by_topic] = np.arange(n_items) - topic_start[t_sorted]
    same = np.flatnonzero(succ == np.arange(n_items))
    # A self-successor would be a repeat, not a dependency: take the next item of the topic instead.
    t_same = item_topic[same]
    succ[same] = by_topic[topic_start[t_same] + (pos_in_topic[same] + 1) % topic_sizes[t_same]]

    # Lengths: lognormal around mean_len, clipped to [MIN_LEN, MAX_LEN].
    sigma = 0.8
    mu = np.log(mean_len) - sigma**2 / 2
    lengths = np.clip(np.rint(rng.lognormal(mu, sigma, n_users)), MIN_LEN, MAX_LEN).astype(np.int64)
    steps = int(lengths.max())

    interests = np.searchsorted(topic_cdf, rng.random((n_users, n_interests)), side="right")
    current = interests[:, 0].copy()
    seq = np.zeros((n_users, steps), dtype=np.int64)
    rows = np.arange(n_users)
    for t in range(steps):
        r = rng.random((6, n_users))
        switch = r[0] < p_switch
        current[switch] = interests[rows[switch], rng.integers(0, n_interests, int(switch.sum()))]
        drift = r[1] < p_drift
        interests[rows[drift], rng.integers(0, n_interests, int(drift.sum()))] = np.searchsorted(
            topic_cdf, rng.random(int(drift.sum())), side="right")
        # Default: a popularity-weighted item from the current topic.
        item = by_topic[np.minimum(np.searchsorted(topic_keys, current + r[2], side="right"), n_items - 1)]
        mode = r[3]
        noise = mode >= 1 - p_noise
        item[noise] = np.minimum(np.searchsorted(global_keys, r[4][noise], side="right"), n_items - 1)
        if t > 0:
            follow = mode < p_succ
            item[follow] = succ[seq[follow, t - 1]]
        if t >= 30:
            back = (mode >= p_succ) & (mode < p_succ + p_return)
            lag = np.minimum(30 + (r[5][back] * 51).astype(np.int64), t)
            item[back] = seq[rows[back], t - lag]
            current[back] = item_topic[item[back]]
        seq[:, t] = item

    mask = np.arange(steps)[None, :] < lengths[:, None]
    gaps = rng.exponential(3600.0, (n_users, steps)).astype(np.int64) + 1
    times = rng.integers(880_000_000, 890_000_000, n_users)[:, None] + np.cumsum(gaps, axis=1)
    user_names = np.array([f"u{u}" for u in range(n_users)], dtype=object)
    item_names = np.array([f"i{i}" for i in range(n_items)], dtype=object)
    users = np.repeat(rows, lengths)
    name = "synthetic" if (n_users, n_items, mean_len) == (2000, 1000, 60) else "synthetic-small" if (
        n_users, n_items, mean_len) == (200, 300, 30) else f"synthetic-{n_users}x{n_items}"
    ds = build_dataset(name, f"synthetic(n_users={n_users}, n_items={n_items}, mean_len={mean_len}, seed={seed})",
                       user_names[users], item_names[seq[mask]], times[mask])
    log.info("generated %s: %d users, %d items, %d interactions", name, ds.n_users, ds.n_items, int(lengths.sum()))
    return ds
