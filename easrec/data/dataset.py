"""Datasets as per-user chronological item sequences, the leave-one-out split and vectorised batching."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from easrec.errors import EasrecError

log = logging.getLogger(__name__)

PAD = "<pad>"


def padded_tail(seqs: list[np.ndarray], max_len: int) -> np.ndarray:
    """The last `max_len` items of every sequence, left-padded with 0: int64 [len(seqs), max_len]."""
    if not isinstance(max_len, (int, np.integer)) or isinstance(max_len, bool) or max_len < 1:
        raise EasrecError(f"max_len must be a positive integer, got {max_len!r}")
    n = len(seqs)
    out = np.zeros((n, int(max_len)), dtype=np.int64)
    if n == 0:
        return out
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=n)
    total = int(lengths.sum())
    if total == 0:
        return out
    flat = np.concatenate(seqs).astype(np.int64, copy=False)
    ends = np.cumsum(lengths)
    take = np.minimum(lengths, max_len)
    rows = np.repeat(np.arange(n), take)
    # Position of each copied element inside its row's kept tail: 0..take-1.
    starts = np.cumsum(take) - take
    k = np.arange(int(take.sum())) - np.repeat(starts, take)
    out[rows, max_len - take[rows] + k] = flat[ends[rows] - take[rows] + k]
    return out


@dataclass
class Split:
    """Chronological leave-one-out: last item = test target, second-to-last = validation target."""

    train: list[np.ndarray]
    valid_users: np.ndarray
    valid_targets: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    test_targets: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def eval_arrays(self, which: Literal["valid", "test"], max_len: int) -> tuple[np.ndarray, np.ndarray]:
        """inputs [n_users, max_len] int64 left-padded with 0 (most recent item last), targets [n_users] int64."""
        if which not in ("valid", "test"):
            raise EasrecError(f"which must be 'valid' or 'test', got {which!r}")
        if which == "valid":
            return padded_tail(self._eval_train(), max_len), self.valid_targets.copy()
        # The test input is the train sequence plus the validation item: shift the validation
        # input left by one and append, which is exactly the tail of train + [valid].
        longer = padded_tail(self._eval_train(), max_len)
        inputs = np.empty_like(longer)
        inputs[:, :-1] = longer[:, 1:]
        inputs[:, -1] = self.valid_targets
        return inputs, self.test_targets.copy()

    def train_arrays(self, max_len: int, all_windows: bool = True, stride: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """SASRec whole-sequence training pairs: input = window[:-1], target = window[1:] (0 = ignore).

        With `all_windows`, a history longer than `max_len` + 1 is cut into windows ending every
        `stride` items from the newest back (default `max_len`: consecutive windows); each window keeps
        as targets only its newest `stride` items (the oldest window keeps all of its own), so every
        training interaction is a target exactly once. A stride below `max_len` gives every target at
        least `max_len − stride` items of context, like the last-item prediction the model serves,
        at `max_len / stride` times the compute per epoch. Without `all_windows` only the newest window
        of each user is used (the SASRec paper's way).
        """
        if not isinstance(max_len, (int, np.integer)) or max_len < 1:
            raise EasrecError(f"max_len must be a positive integer, got {max_len!r}")
        stride = max_len if stride is None else int(stride)
        if not 1 <= stride <= max_len:
            raise EasrecError(f"stride must be in 1..max_len ({max_len}), got {stride}")
        keep = [s for s in self.train if len(s) >= 2]
        n_new: list[int] = []
        if all_windows:
            # Preprocessing once per training run (not per batch): slicing views is cheap.
            windows = []
            for seq in keep:
                for end in range(len(seq), 1, -stride):
                    start = max(0, end - max_len - 1)
                    windows.append(seq[start:end])
                    n_new.append(max_len if start == 0 else stride)
                    if start == 0:
                        break
            keep = windows
        both = padded_tail(keep, max_len + 1)
        inputs = both[:, :-1].copy()
        targets = both[:, 1:].copy()
        # Where the input is padding the first real item would be a target with no history: ignore it.
        targets[inputs == 0] = 0
        if n_new and stride < max_len:
            # Targets older than a window's newest `stride` belong to an older window.
            old = np.arange(max_len)[None, :] < (max_len - np.asarray(n_new))[:, None]
            targets[old] = 0
        return inputs, targets

    def prefix_arrays(self, max_len: int) -> tuple[np.ndarray, np.ndarray]:
        """RecBole's training samples: inputs [N, max_len] (int32, each training prefix's newest items, left-padded)
        and the item that follows each prefix [N].

        Every training interaction with at least one item before it is a target exactly once, as in
        `train_arrays`, but each target is a sample of its own, so an epoch holds as many rows as targets.
        int32 and one target per row keep a 300,000-interaction set at L 200 to 240 MB.
        """
        if not isinstance(max_len, (int, np.integer)) or max_len < 1:
            raise EasrecError(f"max_len must be a positive integer, got {max_len!r}")
        keep = [s for s in self.train if len(s) >= 2]
        n = sum(len(s) - 1 for s in keep)
        inputs = np.zeros((n, max_len), dtype=np.int32)
        targets = np.zeros(n, dtype=np.int64)
        row = 0
        for seq in keep:
            for end in range(1, len(seq)):
                prefix = seq[max(0, end - max_len):end]
                inputs[row, max_len - len(prefix):] = prefix
                targets[row] = seq[end]
                row += 1
        return inputs, targets

    def history(self, which: Literal["valid", "test"]) -> tuple[np.ndarray, np.ndarray]:
        """Each evaluated user's whole known history as CSR: (flat item ids int64, offsets int64 [n_eval + 1]).

        Valid: the train items; test: the train items plus the validation item. Built once per split and
        cached, so every evaluation excludes seen items with one vectorised scatter per batch.
        """
        if which not in ("valid", "test"):
            raise EasrecError(f"which must be 'valid' or 'test', got {which!r}")
        key = f"_history_{which}"
        cached = self.__dict__.get(key)
        if cached is not None:
            return cached
        seqs = self._eval_train()
        lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
        flat = np.concatenate(seqs).astype(np.int64, copy=False) if seqs else np.zeros(0, np.int64)
        if which == "test":
            # Room for one more item at the end of every user's segment: train item j of user u moves
            # right by u places, and the validation item fills the gap.
            n = len(seqs)
            out = np.empty(len(flat) + n, dtype=np.int64)
            out[np.arange(len(flat)) + np.repeat(np.arange(n), lengths)] = flat
            lengths = lengths + 1
            out[np.cumsum(lengths) - 1] = self.valid_targets
            flat = out
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        self.__dict__[key] = (flat, offsets)
        return flat, offsets

    def fingerprint(self) -> dict:
        """What identifies this split: evaluated users and a sha256 of their users and targets."""
        import hashlib

        h = hashlib.sha256()
        for arr in (self.valid_users, self.valid_targets, self.test_targets):
            h.update(np.ascontiguousarray(arr, dtype=np.int64).tobytes())
        return {"eval_users": self.n_eval, "targets_sha256": h.hexdigest()}

    def _eval_train(self) -> list[np.ndarray]:
        cached = self.__dict__.get("_eval_train_cache")
        if cached is None:
            cached = [self.train[u] for u in self.valid_users]
            self.__dict__["_eval_train_cache"] = cached
        return cached

    @property
    def n_eval(self) -> int:
        """Number of users with a validation and a test item."""
        return int(len(self.valid_users))


@dataclass
class Dataset:
    """Per-user chronological item sequences with ids re-indexed to 1..n_items (0 = padding)."""

    name: str
    sequences: list[np.ndarray]
    n_items: int
    raw_item_ids: list[str]
    raw_user_ids: list[str]
    source: str
    _split: Split | None = field(default=None, repr=False, compare=False)

    @property
    def n_users(self) -> int:
        """Number of users (sequences)."""
        return len(self.sequences)

    def lengths(self) -> np.ndarray:
        """Sequence length per user, int64."""
        return np.fromiter((len(s) for s in self.sequences), dtype=np.int64, count=len(self.sequences))

    def stats(self) -> dict:
        """Users, items, interactions, density and sequence-length distribution as a JSON-able dict."""
        lengths = self.lengths()
        n_inter = int(lengths.sum())
        users = len(lengths)
        q = np.percentile(lengths, [25, 50, 75, 90, 99]) if users else np.zeros(5)
        return {
            "name": self.name,
            "source": self.source,
            "users": users,
            "items": int(self.n_items),
            "interactions": n_inter,
            "density": len(np.unique(np.repeat(np.arange(users, dtype=np.int64), lengths) * (self.n_items + 1) + np.concatenate(self.sequences))) / (users * self.n_items) if users and self.n_items else 0.0,  # distinct (user, item) pairs: repeats must not push it above 1
            "seq_len": {
                "min": int(lengths.min()) if users else 0,
                "p25": float(q[0]),
                "p50": float(q[1]),
                "p75": float(q[2]),
                "p90": float(q[3]),
                "p99": float(q[4]),
                "max": int(lengths.max()) if users else 0,
                "mean": float(lengths.mean()) if users else 0.0,
            },
            "eval_users": self.split().n_eval,
        }

    def split(self) -> Split:
        """Chronological leave-one-out split (cached)."""
        if self._split is None:
            lengths = self.lengths()
            valid_users = np.flatnonzero(lengths >= 3).astype(np.int64)
            train = [s[:-2] if len(s) >= 3 else s for s in self.sequences]
            if len(valid_users):
                valid_targets = np.fromiter((self.sequences[u][-2] for u in valid_users), np.int64, len(valid_users))
                test_targets = np.fromiter((self.sequences[u][-1] for u in valid_users), np.int64, len(valid_users))
            else:
                valid_targets = np.zeros(0, np.int64)
                test_targets = np.zeros(0, np.int64)
            self._split = Split(train, valid_users, valid_targets, test_targets)
        return self._split

    def item_popularity(self) -> np.ndarray:
        """Interaction counts per item index over the TRAIN part only; length n_items+1, [0] = 0."""
        train = self.split().train
        flat = np.concatenate(train) if train else np.zeros(0, np.int64)
        counts = np.bincount(flat, minlength=self.n_items + 1).astype(np.int64)
        counts[0] = 0
        return counts

    def mapping(self) -> dict:
        """Raw ids for every index, saved with models so a device can translate ids."""
        return {"items": list(self.raw_item_ids), "users": list(self.raw_user_ids)}


def build_dataset(name: str, source: str, users: np.ndarray, items: np.ndarray, times: np.ndarray) -> Dataset:
    """Group interactions (in file order) into chronological sequences and re-index ids.

    Users get 0..U-1 in order of first appearance in the input; each user's interactions are sorted by
    time, stable so ties keep input order; items get 1..N in order of first appearance when reading
    users 0..U-1 in that chronological order.
    """
    import pandas as pd

    users = np.asarray(users)
    items = np.asarray(items)
    times = np.asarray(times)
    if len(users) == 0:
        raise EasrecError(f"{source}: no interactions")
    user_codes, user_uniques = pd.factorize(users, sort=False)
    # Two stable sorts give a lexicographic (user, time) order that keeps input order on ties.
    by_time = np.argsort(times, kind="stable")
    order = by_time[np.argsort(user_codes[by_time], kind="stable")]
    sorted_users = user_codes[order]
    item_codes, item_uniques = pd.factorize(items[order], sort=False)
    item_idx = item_codes.astype(np.int64) + 1
    counts = np.bincount(sorted_users, minlength=len(user_uniques))
    sequences = np.split(item_idx, np.cumsum(counts)[:-1])
    return Dataset(
        name=name,
        sequences=list(sequences),
        n_items=len(item_uniques),
        raw_item_ids=[PAD] + [str(x) for x in item_uniques],
        raw_user_ids=[str(x) for x in user_uniques],
        source=source,
    )


def k_core_mask(user_codes: np.ndarray, item_codes: np.ndarray, k: int) -> np.ndarray:
    """Rows kept when users and items with < k interactions are removed until none is left."""
    keep = np.ones(len(user_codes), dtype=bool)
    if k <= 1:
        return keep
    n_users = int(user_codes.max()) + 1 if len(user_codes) else 0
    n_items = int(item_codes.max()) + 1 if len(item_codes) else 0
    while True:
        u_count = np.bincount(user_codes[keep], minlength=n_users)
        i_count = np.bincount(item_codes[keep], minlength=n_items)
        new_keep = keep & (u_count[user_codes] >= k) & (i_count[item_codes] >= k)
        if new_keep.sum() == keep.sum():
            return new_keep
        keep = new_keep
