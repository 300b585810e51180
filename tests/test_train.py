"""Tests of easrec.train: metrics, evaluation protocols, the training loop, checkpoints and resume."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from easrec.data import Split, load_dataset
from easrec.errors import EasrecError, atomic_write_bytes
from easrec.model import NEG, SASRec
from easrec.train import load_model, save_model
from easrec.train.checkpoint import CHECKPOINT_FILE, MODEL_FILE, load_torch, save_torch
from easrec.train.evaluate import evaluate_model, evaluate_scores
from easrec.train.metrics import exclude_seen, metrics_from_ranks, sampled_ranks, target_ranks
from easrec.train.run import sasrec_arch, train_run
from easrec.train.trainer import TrainConfig, train_model

DATA_CFG = {"spec": "synthetic-small", "options": {}}
ARCH = sasrec_arch(max_len=20, d=16, layers=1, heads=1, ffn=32)
EPOCHS = 3


def config(**kw) -> TrainConfig:
    base = dict(epochs=EPOCHS, batch_size=64, lr=5e-3, seed=0, threads=1, patience=10)
    base.update(kw)
    return TrainConfig(**base)


def history_metrics(metrics: dict) -> list[dict]:
    """Per-epoch records without wall-clock fields."""
    return [{k: v for k, v in rec.items() if k != "seconds"} for rec in metrics["history"]]


@pytest.fixture(scope="module")
def dataset():
    return load_dataset("synthetic-small")


@pytest.fixture(scope="module")
def baseline(dataset, tmp_path_factory):
    """One uninterrupted 3-epoch run, shared by the tests below."""
    out = tmp_path_factory.mktemp("baseline")
    metrics = train_run(dataset, DATA_CFG, ARCH, config(), out)
    return out, metrics


# --- metrics ----------------------------------------------------------------------------------------

def test_target_ranks_hand_computed():
    scores = torch.tensor([
        [NEG, 0.9, 0.5, 0.1, 0.3],  # target 1: best → rank 0
        [NEG, 0.9, 0.5, 0.1, 0.3],  # target 2: one above → rank 1
        [NEG, 0.9, 0.5, 0.1, 0.3],  # target 3: worst real item → rank 3 (padding NEG is below)
        [NEG, 0.5, 0.5, 0.5, 0.1],  # target 2, tied with two others: ties count against → rank 2
    ])
    targets = torch.tensor([1, 2, 3, 2])
    assert target_ranks(scores, targets).tolist() == [0, 1, 3, 2]


def test_metrics_from_ranks_hand_computed():
    m = metrics_from_ranks(np.array([0]), ks=(1, 5))
    assert m == {"hr@1": 1.0, "ndcg@1": 1.0, "mrr@1": 1.0, "hr@5": 1.0, "ndcg@5": 1.0, "mrr@5": 1.0}
    m = metrics_from_ranks(torch.tensor([1]), ks=(1, 5))
    assert m["hr@1"] == 0.0 and m["ndcg@1"] == 0.0 and m["mrr@1"] == 0.0
    assert m["hr@5"] == 1.0
    assert m["ndcg@5"] == pytest.approx(1 / math.log2(3))
    assert m["mrr@5"] == pytest.approx(0.5)

    m = metrics_from_ranks(np.array([0, 1, 9, 10, 25]))  # default ks 5, 10, 20
    assert set(m) == {f"{n}@{k}" for n in ("hr", "ndcg", "mrr") for k in (5, 10, 20)}
    assert m["hr@5"] == pytest.approx(2 / 5)
    assert m["hr@10"] == pytest.approx(3 / 5)
    assert m["hr@20"] == pytest.approx(4 / 5)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(11)) / 5)
    assert m["mrr@20"] == pytest.approx((1 + 1 / 2 + 1 / 10 + 1 / 11) / 5)


def test_exclude_seen_removes_history_items():
    scores = torch.tensor([[0.0, 5.0, 4.0, 3.0, 2.0, 1.0]])
    inputs = torch.tensor([[0, 0, 1, 3]])  # left padding, history {1, 3}
    out = exclude_seen(scores, inputs)
    assert out is scores  # in place
    assert scores.tolist() == [[NEG, NEG, 4.0, NEG, 2.0, 1.0]]
    # Item 2, second before, is now first.
    assert target_ranks(scores, torch.tensor([2])).tolist() == [0]


def fixed_score_fn(n_items: int):
    """Score item i as i (higher id, higher score), whatever the input."""
    row = torch.arange(n_items + 1, dtype=torch.float32)
    return lambda x: row.expand(x.shape[0], -1).clone()


def repeat_split() -> Split:
    # User 0 history 5,3,4 → valid 2 → test 5: the test target is already in the test input.
    # User 1 history 1,2 → valid 3 → test 4: the target is new.
    return Split(train=[np.array([5, 3, 4]), np.array([1, 2])], valid_users=np.array([0, 1]),
                 valid_targets=np.array([2, 3]), test_targets=np.array([5, 4]))


def test_keep_seen_differs_when_target_in_history():
    split = repeat_split()
    fn = fixed_score_fn(6)
    default = evaluate_scores(fn, split, "test", 4, ks=(1, 2, 5))
    kept = evaluate_scores(fn, split, "test", 4, keep_seen=True, ks=(1, 2, 5))
    # keep_seen, user 0: target 5 below item 6 only → rank 1; user 1: target 4 below 5, 6 → rank 2.
    assert kept["hr@2"] == pytest.approx(0.5)
    assert kept["mrr@5"] == pytest.approx((1 / 2 + 1 / 3) / 2)
    # Default: user 1's history {1, 2, 3} is removed, which does not move 4 (still below 5, 6): rank 2.
    # User 0's target 5 is itself a seen item, so it is excluded and misses at every k here.
    assert default["hr@5"] == pytest.approx(0.5)
    assert default["mrr@5"] == pytest.approx((1 / 3) / 2)
    assert default != kept


def test_exclude_seen_improves_rank_of_new_target():
    # Seen items scoring highest are skipped by default but block the target with keep_seen.
    split = Split(train=[np.array([6, 5, 4])], valid_users=np.array([0]), valid_targets=np.array([2]),
                  test_targets=np.array([3]))
    fn = fixed_score_fn(6)
    default = evaluate_scores(fn, split, "test", 5, ks=(1, 5))
    kept = evaluate_scores(fn, split, "test", 5, keep_seen=True, ks=(1, 5))
    assert default["hr@1"] == 1.0 and default["ndcg@1"] == 1.0
    assert kept["hr@1"] == 0.0 and kept["mrr@5"] == pytest.approx(1 / 4)


def test_sampled_ranks_bounded_and_exclude_target_and_seen():
    gen = torch.Generator().manual_seed(0)
    n_items = 300
    scores = torch.randn(64, n_items + 1, generator=gen)
    inputs = torch.randint(1, n_items + 1, (64, 20), generator=gen)
    targets = torch.randint(1, n_items + 1, (64,), generator=gen)
    pop = np.ones(n_items + 1)
    ranks = sampled_ranks(scores, targets, inputs, pop, seed=1)
    assert ranks.shape == (64,)
    assert int(ranks.min()) >= 0 and int(ranks.max()) <= 100
    assert int(ranks.max()) > 0  # random scores do not all rank first
    # Same seed, same negatives.
    assert torch.equal(ranks, sampled_ranks(scores, targets, inputs, pop, seed=1))
    # Worst possible target: rank exactly 100 (100 negatives, none of them the target).
    worst = scores.clone()
    worst.scatter_(1, targets.view(-1, 1), -1e9)
    assert sampled_ranks(worst, targets, inputs, pop, seed=1).tolist() == [100] * 64
    # Seen items score highest, target second: seen items are never negatives → rank 0.
    rigged = torch.zeros(64, n_items + 1)
    rigged.scatter_(1, inputs, 10.0)
    rigged.scatter_(1, targets.view(-1, 1), 5.0)
    keep = ~(inputs == targets.view(-1, 1)).any(1)  # rows where the target is not itself in the history
    r = sampled_ranks(rigged, targets, inputs, pop, seed=1)
    assert r[keep].tolist() == [0] * int(keep.sum())


def test_evaluate_protocol_errors():
    split = repeat_split()
    with pytest.raises(EasrecError, match="--protocol"):
        evaluate_scores(fixed_score_fn(6), split, "test", 4, protocol="sampled-7")
    with pytest.raises(EasrecError, match="popularity"):
        evaluate_scores(fixed_score_fn(6), split, "test", 4, protocol="sampled-100")


def test_sampled_protocol_on_model(dataset):
    torch.manual_seed(0)
    model = SASRec(ARCH, dataset.n_items, 0.0).eval()
    split = dataset.split()
    full = evaluate_model(model, split, "test")
    sampled = evaluate_model(model, split, "test", protocol="sampled-100", popularity=dataset.item_popularity())
    assert set(sampled) == set(full)
    # 100 negatives instead of ~290: the same model ranks the target higher on average.
    assert sampled["mrr@20"] > full["mrr@20"]
    assert all(0.0 <= v <= 1.0 for v in sampled.values())


# --- training ---------------------------------------------------------------------------------------

def test_loss_decreases_and_beats_random(dataset, baseline):
    _, metrics = baseline
    losses = [rec["loss"] for rec in metrics["history"]]
    assert len(losses) == EPOCHS
    assert losses[-1] < losses[0]
    torch.manual_seed(0)
    untrained = SASRec(ARCH, dataset.n_items, 0.0)
    random_valid = evaluate_model(untrained, dataset.split(), "valid")
    assert metrics["valid"]["ndcg@10"] > 1.5 * random_valid["ndcg@10"]
    # The valid metrics reported are the best epoch's.
    assert metrics["valid"]["ndcg@10"] == max(rec["ndcg@10"] for rec in metrics["history"])
    for key in ("test", "test_keep_seen", "epoch_seconds", "train_seconds", "arch", "best_epoch"):
        assert key in metrics
    assert len(metrics["epoch_seconds"]) == EPOCHS and metrics["train_seconds"] >= sum(metrics["epoch_seconds"])


def test_determinism(dataset, baseline, tmp_path):
    _, first = baseline
    second = train_run(dataset, DATA_CFG, ARCH, config(), tmp_path)
    assert history_metrics(second) == history_metrics(first)
    assert second["test"] == first["test"] and second["valid"] == first["valid"]


def test_resume_after_interrupt_matches_uninterrupted(dataset, baseline, tmp_path):
    _, full = baseline

    def interrupt(rec: dict) -> None:
        if rec["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(dataset, DATA_CFG, ARCH, config(), tmp_path, on_epoch=interrupt)
    assert (tmp_path / CHECKPOINT_FILE).exists()
    assert not (tmp_path / MODEL_FILE).exists()  # training did not finish
    saved = load_torch(tmp_path / CHECKPOINT_FILE)
    assert saved["state"]["epoch"] == 1

    seen = []
    resumed = train_run(dataset, DATA_CFG, ARCH, config(), tmp_path, resume=True, on_epoch=lambda r: seen.append(r["epoch"]))
    assert seen == [2, 3]  # continued, did not restart
    assert history_metrics(resumed) == history_metrics(full)
    assert resumed["test"] == full["test"] and resumed["valid"] == full["valid"]
    assert resumed["best_epoch"] == full["best_epoch"]


def test_checkpoint_files_atomic(baseline):
    out, _ = baseline
    names = sorted(p.name for p in out.iterdir())
    assert not [n for n in names if n.startswith(".tmp-")], names
    for name in ("config.json", "arch.json", "mapping.json", MODEL_FILE, CHECKPOINT_FILE, "metrics.json"):
        assert name in names


def test_atomic_write_failure_keeps_old_file(tmp_path, monkeypatch):
    target = tmp_path / "model.pt"
    target.write_bytes(b"old contents")

    def boom(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"new contents that never land")
    assert target.read_bytes() == b"old contents"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_saved_model_round_trip(baseline, dataset):
    out, metrics = baseline
    model = load_model(out)  # a run directory resolves to its model.pt
    assert not model.training and model.arch == ARCH and model.n_items == dataset.n_items
    again = evaluate_model(model, dataset.split(), "test")
    assert again == metrics["test"]


def test_corrupt_model_file(baseline, tmp_path):
    out, _ = baseline
    data = (out / MODEL_FILE).read_bytes()
    bad = tmp_path / MODEL_FILE
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(EasrecError) as info:
        load_model(bad)
    msg = str(info.value)
    assert str(bad) in msg and "corrupt" in msg and "\n" not in msg
    bad.write_bytes(b"")
    with pytest.raises(EasrecError, match="model.pt"):
        load_model(bad)
    with pytest.raises(EasrecError, match="not found"):
        load_model(tmp_path / "absent.pt")
    empty_run = tmp_path / "run"
    empty_run.mkdir()
    with pytest.raises(EasrecError, match="no model.pt"):
        load_model(empty_run)


def test_model_weights_not_matching_arch(tmp_path):
    torch.manual_seed(0)
    model = SASRec(ARCH, 30, 0.0)
    path = tmp_path / MODEL_FILE
    save_model(model, path)
    payload = torch.load(path, weights_only=False)
    payload["arch"]["d"] = 32  # arch now says d 32, weights are d 16
    save_torch(payload, path)
    with pytest.raises(EasrecError) as info:
        load_model(path)
    assert str(path) in str(info.value) and "do not match" in str(info.value)
    payload["format"] = "something-else"
    save_torch(payload, path)
    with pytest.raises(EasrecError, match="format"):
        load_model(path)


def test_resume_errors(dataset, baseline, tmp_path):
    with pytest.raises(EasrecError, match="--resume"):
        train_run(dataset, DATA_CFG, ARCH, config(), tmp_path, resume=True)
    out, _ = baseline
    (tmp_path / CHECKPOINT_FILE).write_bytes((out / CHECKPOINT_FILE).read_bytes())
    other = sasrec_arch(max_len=20, d=32, layers=1, heads=1, ffn=32)
    with pytest.raises(EasrecError, match="another architecture"):
        train_run(dataset, DATA_CFG, other, config(), tmp_path, resume=True)


def test_bce_loss_trains(dataset, tmp_path):
    torch.manual_seed(0)
    model = SASRec(ARCH, dataset.n_items, 0.0)
    split = dataset.split()
    before = evaluate_model(model, split, "valid")
    result = train_model(model, split, config(loss="bce", epochs=2, lr=1e-2), tmp_path)
    losses = [rec["loss"] for rec in result.history]
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < losses[0]
    assert result.best_valid["ndcg@10"] > before["ndcg@10"]


@pytest.mark.parametrize("kw,field", [
    ({"epochs": 0}, "--epochs"), ({"batch_size": 0}, "--batch-size"), ({"lr": 0.0}, "--lr"),
    ({"loss": "mse"}, "--loss"), ({"patience": 0}, "--patience"),
])
def test_train_config_validation(kw, field):
    with pytest.raises(EasrecError, match=field):
        config(**kw).validate()


def test_sasrec_arch_errors():
    with pytest.raises(EasrecError, match="--max-len"):
        sasrec_arch(max_len=0)
    with pytest.raises(EasrecError, match="--heads"):
        sasrec_arch(d=30, heads=4)
    arch = sasrec_arch(max_len=20, d=16, layers=3, heads=2, ffn=32)
    assert arch.depth == 3 and arch.head_size == 8 and arch.layers[0].heads == 2


def test_model_file_missing_field(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / MODEL_FILE
    save_model(SASRec(ARCH, 30, 0.0), path)
    payload = torch.load(path, weights_only=False)
    del payload["arch"]
    save_torch(payload, path)
    with pytest.raises(EasrecError, match="arch"):
        load_model(path)
