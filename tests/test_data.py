"""Tests of easrec.data: readers, errors, filters, re-indexing, split, batching, synthetic data, fetch, CLI."""

from __future__ import annotations

import json
import urllib.error
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from easrec.cli import main as cli_main
from easrec.data import Dataset, Split, load_dataset, padded_tail, resolve, synthetic_dataset
from easrec.data.dataset import build_dataset
from easrec.data.fetch import fetch
from easrec.errors import EasrecError

ROWS = [  # user, item, rating, timestamp (file order)
    ("10", "a", 5, 100),
    ("20", "b", 3, 50),
    ("10", "b", 4, 90),
    ("10", "c", 1, 300),
    ("20", "a", 4, 60),
    ("20", "c", 5, 70),
    ("10", "d", 5, 200),
]
# user 10 chronological: b(90) a(100) d(200) c(300); user 20: b(50) a(60) c(70)
EXPECTED_RAW = {"10": ["b", "a", "d", "c"], "20": ["b", "a", "c"]}


def raw_sequences(ds: Dataset) -> dict[str, list[str]]:
    return {ds.raw_user_ids[u]: [ds.raw_item_ids[i] for i in seq] for u, seq in enumerate(ds.sequences)}


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --- readers -----------------------------------------------------------------------------------------

def test_read_recbole_inter(tmp_path):
    body = "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in ROWS)
    p = write(tmp_path / "x.inter", "user_id:token\titem_id:token\trating:float\ttimestamp:float\n" + body)
    ds = load_dataset(p)
    assert raw_sequences(ds) == EXPECTED_RAW
    assert ds.n_items == 4 and ds.raw_item_ids[0] == "<pad>"
    assert ds.source == str(p)


def test_read_movielens_dat_and_udata(tmp_path):
    d = tmp_path / "ml"
    d.mkdir()
    write(d / "ratings.dat", "".join(f"{u}::{i}::{r}::{t}\n" for u, i, r, t in ROWS))
    assert raw_sequences(load_dataset(d / "ratings.dat")) == EXPECTED_RAW
    assert raw_sequences(load_dataset(d)) == EXPECTED_RAW  # a folder: the ratings file inside
    u = write(tmp_path / "u.data", "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in ROWS))
    assert raw_sequences(load_dataset(u, min_rating=4)) == {"10": ["b", "a", "d"], "20": ["a", "c"]}


def test_read_csv_tsv_parquet_custom_columns(tmp_path):
    frame = pd.DataFrame(ROWS, columns=["who", "what", "stars", "when"])
    frame["extra"] = "z"
    frame.to_csv(tmp_path / "x.csv", index=False)
    frame.to_csv(tmp_path / "x.tsv", index=False, sep="\t")
    frame.to_parquet(tmp_path / "x.parquet")
    frame.to_csv(tmp_path / "semi.csv", index=False, sep=";")
    kw = dict(user_col="who", item_col="what", time_col="when", rating_col="stars")
    for name in ("x.csv", "x.tsv", "x.parquet"):
        assert raw_sequences(load_dataset(tmp_path / name, **kw)) == EXPECTED_RAW, name
    assert raw_sequences(load_dataset(tmp_path / "semi.csv", sep=";", **kw)) == EXPECTED_RAW
    assert raw_sequences(load_dataset(tmp_path / "x.csv", min_rating=5, **kw)) == {"10": ["a", "d"], "20": ["c"]}


def test_csv_default_and_movielens_column_names(tmp_path):
    pd.DataFrame(ROWS, columns=["user_id", "item_id", "rating", "timestamp"]).to_csv(tmp_path / "a.csv", index=False)
    pd.DataFrame(ROWS, columns=["userId", "movieId", "rating", "timestamp"]).to_csv(tmp_path / "b.csv", index=False)
    assert raw_sequences(load_dataset(tmp_path / "a.csv")) == EXPECTED_RAW
    assert raw_sequences(load_dataset(tmp_path / "b.csv")) == EXPECTED_RAW


def test_read_sasrec_txt_keeps_line_order(tmp_path):
    # No timestamp: the order inside a user is the order of the lines, even when users interleave.
    p = write(tmp_path / "Beauty.txt", "10 7\n20 3\n10 2\n\n10 9\n20 7\t\n")
    ds = load_dataset(p)
    assert raw_sequences(ds) == {"10": ["7", "2", "9"], "20": ["3", "7"]}
    assert ds.name == "Beauty" and ds.n_items == 4
    # A single line per user as the original SASRec repository writes it, also tab separated.
    q = write(tmp_path / "t.txt", "1\t5\n1\t6\n1\t5\n")
    assert raw_sequences(load_dataset(q)) == {"1": ["5", "6", "5"]}


@pytest.mark.parametrize("body, line, what", [
    ("1 2\n1 3\n1\n1 4\n", 3, "found 1"),
    ("1 2\n\n1 3 7\n", 3, "found 3"),
    ("1 2\n1 3\n1 3 4 5\n", 3, "found 4"),
    ("1 2\n1 x\n", 2, "item id 'x' is not an integer"),
    ("1 2\n1.5 3\n", 2, "user id '1.5' is not an integer"),
])
def test_sasrec_txt_errors_name_file_and_line(tmp_path, body, line, what):
    p = write(tmp_path / "bad.txt", body)
    with pytest.raises(EasrecError) as err:
        load_dataset(p)
    msg = str(err.value)
    assert f"bad.txt:{line}: " in msg and what in msg and "\n" not in msg
    with pytest.raises(EasrecError, match="bad.txt: no interactions"):
        load_dataset(write(tmp_path / "bad.txt", ""))


def test_cli_stats_sasrec_txt(tmp_path, capsys):
    p = write(tmp_path / "x.txt", "".join(f"{u} {i}\n" for u in range(1, 4) for i in range(1, 6)))
    assert cli_main(["data", "stats", str(p), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["users"] == 3 and out["items"] == 5 and out["interactions"] == 15
    assert cli_main(["data", "stats", str(write(tmp_path / "y.txt", "1 2 3\n"))]) == 2
    assert "y.txt:1: expected 2 fields" in capsys.readouterr().err


# --- errors --------------------------------------------------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(EasrecError, match="data file not found: .*nope.csv"):
        load_dataset(tmp_path / "nope.csv")
    with pytest.raises(EasrecError, match="data file not found"):
        load_dataset(str(tmp_path / "nope"))


def test_unknown_format(tmp_path):
    p = write(tmp_path / "blob.bin", "hello world\nsecond line\n")
    with pytest.raises(EasrecError, match="unknown data format for .*blob.bin"):
        load_dataset(p)


def test_header_without_columns_names_field_and_columns(tmp_path):
    p = write(tmp_path / "cols.csv", "user_id,product,timestamp\n1,2,3\n")
    with pytest.raises(EasrecError) as err:
        load_dataset(p)
    msg = str(err.value)
    assert "cols.csv" in msg and "item" in msg and "product" in msg and "user_id" in msg
    assert "\n" not in msg
    with pytest.raises(EasrecError, match="no time column 'when'.*columns found: user_id, product, timestamp"):
        load_dataset(p, item_col="product", time_col="when")


def test_non_numeric_timestamp_names_line(tmp_path):
    # line 1 header, line 2 ok, line 3 blank (pandas skips it), line 4 ok, line 5 bad
    p = write(tmp_path / "bad.inter",
              "user_id:token\titem_id:token\ttimestamp:float\n1\t2\t10\n\n1\t3\t11\n2\t4\tyesterday\n")
    with pytest.raises(EasrecError, match=r"bad\.inter:5: non-numeric timestamp 'yesterday'"):
        load_dataset(p)
    q = write(tmp_path / "ratings.dat", "1::2::3::10\n1::3::3::oops\n")
    with pytest.raises(EasrecError, match=r"ratings\.dat:2: non-numeric timestamp 'oops'"):
        load_dataset(q)


def test_no_user_left_and_unknown_name(tmp_path):
    p = write(tmp_path / "u.data", "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in ROWS))
    with pytest.raises(EasrecError, match="u.data: no user left after filtering"):
        load_dataset(p, min_rating=6)
    with pytest.raises(EasrecError, match="no user left"):
        load_dataset(p, k_core=5)
    with pytest.raises(EasrecError, match="unknown data set 'movielens'.*synthetic.*ml-100k.*ml-1m"):
        load_dataset("movielens")
    with pytest.raises(EasrecError, match="max_len"):
        padded_tail([np.arange(3)], 0)


# --- filters, re-indexing, ordering ------------------------------------------------------------------

def test_k_core_is_iterative(tmp_path):
    # k=2: item z has one interaction -> removed; then user 3 has one item left -> removed;
    # then item y drops to one interaction -> removed; then user 2 has one -> removed. Users 1,4 survive.
    rows = [("1", "x", 1), ("1", "w", 2), ("4", "x", 3), ("4", "w", 4),
            ("2", "x", 5), ("2", "y", 6), ("3", "y", 7), ("3", "z", 8)]
    p = write(tmp_path / "k.csv", "user_id,item_id,timestamp\n" + "".join(f"{u},{i},{t}\n" for u, i, t in rows))
    # Without iteration, one pass keeps user 2 (x, y each seen twice) and user 3 (y).
    ds = load_dataset(p, k_core=2)
    assert raw_sequences(ds) == {"1": ["x", "w"], "4": ["x", "w"]}
    assert ds.n_items == 2
    assert len(load_dataset(p, k_core=0).sequences) == 4


def test_reindex_and_tie_stable_sort():
    users = np.array(["u9", "u9", "u9", "u5", "u9", "u5"])
    items = np.array(["p", "q", "r", "s", "t", "q"])
    times = np.array([5, 3, 3, 1, 3, 0])
    ds = build_dataset("t", "t", users, items, times)
    # u9 in time order with ties at 3 kept in file order: q, r, t, then p
    assert ds.raw_user_ids == ["u9", "u5"]
    assert raw_sequences(ds) == {"u9": ["q", "r", "t", "p"], "u5": ["q", "s"]}
    assert ds.raw_item_ids == ["<pad>", "q", "r", "t", "p", "s"]
    assert [s.tolist() for s in ds.sequences] == [[1, 2, 3, 4], [1, 5]]
    assert all(s.dtype == np.int64 for s in ds.sequences)
    assert ds.mapping() == {"items": ds.raw_item_ids, "users": ["u9", "u5"]}
    json.dumps(ds.mapping())


# --- split and batching ------------------------------------------------------------------------------

def make(seqs: list[list[int]]) -> Dataset:
    n = max((max(s) for s in seqs if s), default=0)
    return Dataset("t", [np.asarray(s, np.int64) for s in seqs], n, ["<pad>"] + [str(i) for i in range(1, n + 1)],
                   [str(u) for u in range(len(seqs))], "t")


def test_split_and_eval_arrays():
    ds = make([[1, 2, 3, 4, 5], [6, 7], [3, 1, 2]])
    sp = ds.split()
    assert [t.tolist() for t in sp.train] == [[1, 2, 3], [6, 7], [3]]
    assert sp.valid_users.tolist() == [0, 2]
    x, y = sp.eval_arrays("valid", 4)
    assert x.tolist() == [[0, 1, 2, 3], [0, 0, 0, 3]] and y.tolist() == [4, 1]
    x, y = sp.eval_arrays("test", 2)
    assert x.tolist() == [[3, 4], [3, 1]] and y.tolist() == [5, 2]
    assert x.dtype == np.int64 and y.dtype == np.int64
    # popularity counts the train part only: 4, 5 (user 0) and 1, 2 (user 2) are held out
    assert ds.item_popularity().tolist() == [0, 1, 1, 2, 0, 0, 1, 1]
    with pytest.raises(EasrecError):
        sp.eval_arrays("train", 4)


def test_split_history_is_whole_known_history():
    ds = make([[1, 2, 3, 4, 5], [6, 7], [3, 1, 2], [8, 9, 8, 1, 2, 4]])
    sp = ds.split()
    flat, off = sp.history("valid")
    assert [flat[off[i]:off[i + 1]].tolist() for i in range(sp.n_eval)] == [[1, 2, 3], [3], [8, 9, 8, 1]]
    flat, off = sp.history("test")
    assert [flat[off[i]:off[i + 1]].tolist() for i in range(sp.n_eval)] == [[1, 2, 3, 4], [3, 1], [8, 9, 8, 1, 2]]
    assert flat.dtype == np.int64 and off.dtype == np.int64
    assert sp.history("test")[0] is flat  # built once per split
    with pytest.raises(EasrecError, match="which"):
        sp.history("train")
    fp = sp.fingerprint()
    assert fp["eval_users"] == 3 and len(fp["targets_sha256"]) == 64
    assert make([[1, 2, 3, 4, 5], [6, 7], [3, 1, 2], [8, 9, 8, 1, 2, 3]]).split().fingerprint() != fp


def test_train_arrays_shift_and_ignore():
    sp = Split(train=[np.array([5, 6, 7, 8]), np.array([9]), np.array([2, 3])], valid_users=np.array([], np.int64))
    x, y = sp.train_arrays(3)
    assert x.tolist() == [[5, 6, 7], [0, 0, 2]]
    assert y.tolist() == [[6, 7, 8], [0, 0, 3]]
    x, y = sp.train_arrays(5)
    assert x.tolist() == [[0, 0, 5, 6, 7], [0, 0, 0, 0, 2]]
    assert y.tolist() == [[0, 0, 6, 7, 8], [0, 0, 0, 0, 3]]


def padded_tail_reference(seqs, max_len):
    out = np.zeros((len(seqs), max_len), np.int64)
    for r, s in enumerate(seqs):
        tail = list(s)[-max_len:]
        if tail:
            out[r, max_len - len(tail):] = tail
    return out


def test_padded_tail_matches_reference():
    rng = np.random.default_rng(1)
    seqs = [rng.integers(1, 50, rng.integers(0, 30)) for _ in range(200)]
    for max_len in (1, 2, 7, 29, 40):
        got = padded_tail(seqs, max_len)
        assert got.dtype == np.int64 and got.shape == (200, max_len)
        np.testing.assert_array_equal(got, padded_tail_reference(seqs, max_len))
    assert padded_tail([], 5).shape == (0, 5)
    assert padded_tail([np.zeros(0, np.int64)] * 2, 3).tolist() == [[0, 0, 0], [0, 0, 0]]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(1, 40), min_size=0, max_size=25).filter(bool), min_size=1, max_size=12),
       st.integers(1, 30))
def test_split_never_leaks(seqs, max_len):
    ds = make(seqs)
    sp = ds.split()
    full = ds.sequences
    for u, seq in enumerate(full):
        expect = seq[:-2] if len(seq) >= 3 else seq
        np.testing.assert_array_equal(sp.train[u], expect)
    xv, yv = sp.eval_arrays("valid", max_len)
    xt, yt = sp.eval_arrays("test", max_len)
    for row, u in enumerate(sp.valid_users):
        seq = full[u]
        assert len(seq) >= 3
        assert yv[row] == seq[-2] and yt[row] == seq[-1]
        # inputs are exactly the tails of full[:-2] and full[:-1]: no target position leaks in
        np.testing.assert_array_equal(xv[row], padded_tail_reference([seq[:-2]], max_len)[0])
        np.testing.assert_array_equal(xt[row], padded_tail_reference([seq[:-1]], max_len)[0])
    assert set(sp.valid_users.tolist()) == {u for u, s in enumerate(full) if len(s) >= 3}
    x, y = sp.train_arrays(max_len, all_windows=False)
    kept = [t for t in sp.train if len(t) >= 2]
    np.testing.assert_array_equal(x, padded_tail_reference([t[:-1] for t in kept], max_len))
    ref_y = padded_tail_reference([t[1:] for t in kept], max_len)
    np.testing.assert_array_equal(y, np.where(x == 0, 0, ref_y))
    # All windows: every training interaction after a user's first is a target exactly once, and
    # each target's input row is that user's history just before it.
    xw, yw = sp.train_arrays(max_len)
    got = sorted(yw[yw != 0].tolist())
    want = sorted(int(i) for t in kept for i in t[1:])
    assert got == want
    for r in range(len(xw)):
        for c in np.nonzero(yw[r])[0]:
            assert xw[r, c] != 0 and (c + 1 == xw.shape[1] or yw[r, c] == xw[r, c + 1])


# --- synthetic --------------------------------------------------------------------------------------

def test_synthetic_deterministic_and_structured():
    a = synthetic_dataset(n_users=300, n_items=400, mean_len=40, seed=3)
    b = synthetic_dataset(n_users=300, n_items=400, mean_len=40, seed=3)
    c = synthetic_dataset(n_users=300, n_items=400, mean_len=40, seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(a.sequences, b.sequences)) and a.raw_item_ids == b.raw_item_ids
    assert not all(len(x) == len(y) and np.array_equal(x, y) for x, y in zip(a.sequences, c.sequences))
    lengths = a.lengths()
    assert lengths.min() >= 5 and lengths.max() <= 300 and lengths.std() > 10

    # heavy tail: the top 10% of items take far more than 10% of interactions
    counts = np.sort(np.bincount(np.concatenate(a.sequences))[1:])[::-1]
    assert counts[: len(counts) // 10].sum() / counts.sum() > 0.35

    # successor structure: the most common next item, learnt on half the users, predicts the next
    # item of the other half far better than in the same sequences shuffled
    def held_out_next_hit(seqs):
        def pairs(part):
            return (np.concatenate([s[:-1] for s in part]), np.concatenate([s[1:] for s in part]))

        p, n = pairs(seqs[::2])
        counts = pd.DataFrame({"p": p, "n": n}).value_counts().reset_index()
        best = counts.sort_values("count", ascending=False).drop_duplicates("p").set_index("p")["n"]
        p, n = pairs(seqs[1::2])
        guess = best.reindex(p).to_numpy()
        return float(np.mean(guess == n))

    rng = np.random.default_rng(0)
    shuffled = [rng.permutation(s) for s in a.sequences]
    real, base = held_out_next_hit(a.sequences), held_out_next_hit(shuffled)
    assert real > 0.25 and real > base + 0.08, (real, base)


def test_synthetic_names_and_popularity_baseline_gap():
    ds = load_dataset("synthetic-small")
    assert 150 <= len(ds.sequences) <= 200 and 200 <= ds.n_items <= 300
    assert resolve("synthetic") == "synthetic"
    sp = ds.split()
    x, y = sp.eval_arrays("test", 50)
    pop = ds.item_popularity()
    pop_hit = np.isin(y, np.argsort(-pop)[:10]).mean()
    # first-order transitions from train beat popularity by a wide margin
    trans = np.zeros((ds.n_items + 1, ds.n_items + 1))
    for t in sp.train:
        np.add.at(trans, (t[:-1], t[1:]), 1)
    top = np.argsort(-(trans[x[:, -1]] + 1e-3 * pop), axis=1)[:, :10]
    markov_hit = (top == y[:, None]).any(1).mean()
    assert markov_hit > 2 * pop_hit


# --- real data, fetch, CLI ----------------------------------------------------------------------------

def test_ml100k(ml100k_path):
    ds = load_dataset(ml100k_path)
    assert (len(ds.sequences), ds.n_items, sum(map(len, ds.sequences))) == (943, 1682, 100000)
    named = load_dataset("ml-100k")
    assert named.name == "ml-100k" and named.stats()["interactions"] == 100000
    assert len(load_dataset(ml100k_path, min_rating=4, k_core=5).sequences) < 943


def test_cli_stats_json(ml100k_path, capsys):
    assert cli_main(["data", "stats", "ml-100k", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["users"] == 943 and out["items"] == 1682 and out["interactions"] == 100000
    assert out["seq_len"]["min"] == 20


def test_cli_stats_synthetic_and_error(capsys, tmp_path):
    assert cli_main(["data", "stats", "synthetic-small", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "synthetic-small"
    assert cli_main(["data", "stats", str(tmp_path / "missing.csv")]) == 2
    assert "data file not found" in capsys.readouterr().err


def test_fetch_offline(monkeypatch, tmp_path, capsys):
    def offline(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    with pytest.raises(EasrecError) as err:
        fetch("ml-1m", tmp_path)
    msg = str(err.value)
    assert "cannot download ml-1m from https://files.grouplens.org/datasets/movielens/ml-1m.zip: no network" in msg
    assert str(tmp_path / "ml-1m" / "ratings.dat") in msg
    assert list(tmp_path.iterdir()) == []  # nothing half-written left behind
    assert cli_main(["data", "fetch", "ml-20m", "--cache", str(tmp_path)]) == 2
    assert "copy ratings.csv" in capsys.readouterr().err


def test_fetch_from_local_zip(monkeypatch, tmp_path):
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ml-1m/ratings.dat", "".join(f"{u}::{i}::{r}::{t}\n" for u, i, r, t in ROWS))
    monkeypatch.setattr("urllib.request.urlopen", lambda *a, **k: io.BytesIO(buf.getvalue()))
    monkeypatch.setenv("EASREC_CACHE", str(tmp_path))
    path = fetch("ml-1m")
    assert path == tmp_path / "ml-1m" / "ratings.dat"
    assert raw_sequences(load_dataset("ml-1m")) == EXPECTED_RAW
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ml-1m"]


def test_synthetic_defaults_long_range():
    # Its speed (goal < 2 s) is measured by benchmarks/synthetic_speed.py: a wall-clock bound is not a test.
    ds = synthetic_dataset()
    assert len(ds.sequences) == 2000 and ds.lengths().max() > 200
    x, y = ds.split().eval_arrays("test", 100)
    # returns to items seen 30-80 steps back: a longer window contains the target clearly more often
    hit = {n: (x[:, -n:] == y[:, None]).any(1).mean() for n in (20, 80)}
    assert hit[80] > hit[20] + 0.05, hit


def test_folder_rules_and_rating_filter_needs_rating(tmp_path, capsys):
    d = tmp_path / "two"
    d.mkdir()
    write(d / "a.inter", "user_id:token\titem_id:token\ttimestamp:float\n1\t2\t3\n")
    write(d / "b.inter", "user_id:token\titem_id:token\ttimestamp:float\n1\t2\t3\n")
    with pytest.raises(EasrecError, match="several .inter files"):
        load_dataset(d)
    with pytest.raises(EasrecError, match="a.inter: min_rating given but the file has no rating column"):
        load_dataset(d / "a.inter", min_rating=3)
    # the human summary prints a table, not JSON
    assert cli_main(["data", "stats", str(d / "a.inter")]) == 0
    assert "interactions" in capsys.readouterr().out


@pytest.mark.parametrize("stride", [1, 3, 5])
def test_strided_windows_use_every_target_once_with_long_context(stride):
    """Windows ending every `stride` items: each training interaction is a target once, each with ≥ L − stride of context."""
    from easrec.data.dataset import Split

    seqs = [np.arange(1, 24), np.arange(100, 104), np.arange(200, 202)]
    split = Split(seqs, np.zeros(0, np.int64))
    L = 5
    x, y = split.train_arrays(L, stride=stride)
    want = sorted(int(v) for s in seqs for v in s[1:])
    assert sorted(y[y != 0].tolist()) == want
    position = {int(v): i for s in seqs for i, v in enumerate(s)}  # items are unique: index = history before it
    for row_x, row_y in zip(x, y):
        for j in np.flatnonzero(row_y):
            context = int((row_x[: j + 1] != 0).sum())
            assert context >= min(L - stride + 1, position[int(row_y[j])])
    with pytest.raises(EasrecError, match="stride"):
        split.train_arrays(L, stride=L + 1)


def test_prefix_arrays_one_row_per_target_with_its_whole_history():
    """RecBole's samples: each training interaction is the target of exactly one row holding the newest L items before it."""
    from easrec.data.dataset import Split

    seqs = [np.arange(1, 10), np.arange(100, 103), np.arange(200, 201)]
    L = 4
    x, y = Split(seqs, np.zeros(0, np.int64)).prefix_arrays(L)
    assert x.shape == (8 + 2, L) and y.shape == (8 + 2,)  # a one-item history has no target
    assert x.dtype == np.int32 and y.dtype == np.int64
    assert sorted(y.tolist()) == sorted(int(v) for s in seqs for v in s[1:])
    for row_x, target in zip(x, y):
        seq = next(s for s in seqs if target in s)
        before = seq[: list(seq).index(target)][-L:]
        assert row_x[row_x != 0].tolist() == before.tolist()
        assert (row_x[: L - len(before)] == 0).all()  # padded on the left, newest item last
    with pytest.raises(EasrecError, match="max_len"):
        Split(seqs, np.zeros(0, np.int64)).prefix_arrays(0)
