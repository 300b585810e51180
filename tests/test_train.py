"""Tests of easrec.train: metrics, evaluation protocols, the training loop, checkpoints and resume."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from easrec.data import Split, load_dataset, synthetic_dataset
from easrec.errors import EasrecError
from easrec.io import atomic_write_bytes
from easrec.model import NEG, SASRec
from easrec.train import load_model, save_model
from easrec.train.checkpoint import CHECKPOINT_FILE, MODEL_FILE, load_torch, save_torch
from easrec.train.evaluate import evaluate_model, evaluate_ranks, evaluate_scores
from easrec.train.metrics import exclude_seen, metrics_from_ranks, per_user_metrics, sampled_ranks, target_ranks
from easrec.train.run import sasrec_arch, train_run
from easrec.train.trainer import TrainConfig, train_model

DATA_CFG = {"spec": "synthetic-small", "options": {}}
ARCH = sasrec_arch(max_len=20, d=16, layers=1, heads=1, ffn=32)
EPOCHS = 3


def config(**kw) -> TrainConfig:
    base = dict(epochs=EPOCHS, batch_size=64, lr=5e-3, seed=0, threads=1, patience=10, targets="all")
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


def test_last_targets_train_one_sample_per_prefix(dataset, baseline, tmp_path):
    """targets="last" trains on every prefix with the loss on its newest item: same targets per epoch, many more steps."""
    _, windows = baseline
    metrics = train_run(dataset, DATA_CFG, ARCH, config(epochs=1, targets="last"), tmp_path)
    n_targets = int((dataset.split().train_arrays(ARCH.max_len)[1] != 0).sum())
    assert metrics["history"][0]["targets"] == n_targets
    assert metrics["steps"] == math.ceil(n_targets / 64) > windows["steps"] / EPOCHS
    torch.manual_seed(0)
    untrained = evaluate_model(SASRec(ARCH, dataset.n_items, 0.0), dataset.split(), "valid")
    assert metrics["valid"]["ndcg@10"] > 1.5 * untrained["ndcg@10"]
    with pytest.raises(EasrecError, match="--targets"):
        config(targets="first").validate()


def test_plateau_decay_lowers_the_learning_rate_after_evaluations_without_gain(dataset, tmp_path):
    """With a learning rate too small to move validation NDCG, every evaluation after the first is without gain."""
    cfg = config(epochs=5, lr=1e-12, eval_every=200, patience=4, plateau_factor=0.5, plateau_evals=2)
    metrics = train_run(dataset, DATA_CFG, ARCH, cfg, tmp_path)
    lrs = [rec["lr"] for rec in metrics["history"]]
    # Evaluations 1-2 and 3-4 are without gain: the rate halves after the 2nd and the 4th (the 4th also stops).
    assert lrs[:4] == pytest.approx([1e-12, 1e-12, 1e-12, 5e-13])
    assert len(lrs) == 5
    flat = train_run(dataset, DATA_CFG, ARCH, config(epochs=5, lr=1e-12, eval_every=200, patience=4), tmp_path / "flat")
    assert {rec["lr"] for rec in flat["history"]} == {1e-12}


def test_cosine_schedule_decays_to_zero_over_the_epoch_budget(dataset, tmp_path):
    """One evaluation per epoch: after epochs 1, 2, 3 of 3 the rate is lr·½(1 + cos(π·k/3)) = 0.75, 0.25, 0 of lr."""
    metrics = train_run(dataset, DATA_CFG, ARCH, config(lr=4e-3, schedule="cosine"), tmp_path)
    assert [rec["lr"] for rec in metrics["history"]] == pytest.approx([3e-3, 1e-3, 0.0], abs=1e-12)


def test_weight_average_is_what_is_evaluated_and_kept(dataset, tmp_path):
    """With --ema the model evaluated, selected and returned is the running average, not the last weights."""
    split = dataset.split()
    torch.manual_seed(0)
    model = SASRec(ARCH, dataset.n_items, 0.2)
    cfg = config(epochs=2, ema=0.9)
    live: list[torch.Tensor] = []
    result = train_model(model, split, cfg, tmp_path, step_hook=lambda step: live.append(
        torch.cat([p.detach().flatten().clone() for p in model.parameters()])))
    # The average by hand over the live weights after every step, with the trainer's decay warm-up.
    torch.manual_seed(0)
    avg = torch.cat([p.detach().flatten() for p in SASRec(ARCH, dataset.n_items, 0.2).parameters()])
    for step, w in enumerate(live[:result.best_step]):
        decay = min(0.9, (1 + step) / (10 + step))
        avg = avg + (1 - decay) * (w - avg)
    kept = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert torch.allclose(kept, avg, atol=1e-5)  # the average at the selected step
    assert not torch.allclose(kept, live[result.best_step - 1], atol=1e-4)  # not that step's live weights
    # The returned model scores what the selection saw.
    assert evaluate_model(model, split, "valid")["ndcg@10"] == pytest.approx(result.best_valid["ndcg@10"], abs=1e-12)
    # A checkpoint carries the average, so a resumed run continues it; one without it is refused.
    saved = load_torch(tmp_path / CHECKPOINT_FILE)
    assert len(saved["ema"]) == len(list(model.parameters()))
    saved["ema"] = []
    save_torch(saved, tmp_path / CHECKPOINT_FILE)
    torch.manual_seed(0)
    with pytest.raises(EasrecError, match="ema"):
        train_model(SASRec(ARCH, dataset.n_items, 0.2), split, config(epochs=3, ema=0.9), tmp_path, resume=True)


def test_resume_with_weight_average_matches_uninterrupted(dataset, tmp_path):
    cfg = config(epochs=3, ema=0.95)
    full = train_run(dataset, DATA_CFG, ARCH, cfg, tmp_path / "full")

    def interrupt(rec: dict) -> None:
        if rec["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(dataset, DATA_CFG, ARCH, cfg, tmp_path / "cut", on_epoch=interrupt)
    resumed = train_run(dataset, DATA_CFG, ARCH, cfg, tmp_path / "cut", resume=True)
    assert history_metrics(resumed) == history_metrics(full)
    assert resumed["test"] == full["test"]


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


def test_bf16_training_learns_keeps_fp32_weights_and_differs_from_fp32(dataset, baseline, tmp_path):
    """precision="bf16" runs the training step under bf16 autocast: it learns as fp32 does, and the weights,
    optimizer state and evaluation stay fp32 (so files and metrics are unchanged in kind)."""
    _, fp32 = baseline
    metrics = train_run(dataset, DATA_CFG, ARCH, config(precision="bf16"), tmp_path)
    losses = [rec["loss"] for rec in metrics["history"]]
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
    assert all(p.dtype == torch.float32 for p in load_model(tmp_path / MODEL_FILE).parameters())
    assert json.loads((tmp_path / "config.json").read_text())["train"]["precision"] == "bf16"
    # Same seed, init and batches: bf16 arithmetic moves the losses a little, not a lot.
    fp32_losses = [rec["loss"] for rec in fp32["history"]]
    assert losses != fp32_losses
    assert all(abs(a - b) < 0.05 * b for a, b in zip(losses, fp32_losses))
    assert metrics["valid"]["ndcg@10"] > 0.7 * fp32["valid"]["ndcg@10"]


def test_bf16_on_a_cpu_without_native_bf16_warns(dataset, tmp_path, monkeypatch, caplog):
    import easrec.train.trainer as trainer

    monkeypatch.setattr(trainer, "cpu_has_native_bf16", lambda: False)
    with caplog.at_level("WARNING", logger="easrec.train.trainer"):
        train_model(SASRec(ARCH, dataset.n_items, 0.0), dataset.split(), config(precision="bf16", epochs=1), tmp_path)
    assert any("no native bf16" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level("WARNING", logger="easrec.train.trainer"):
        train_model(SASRec(ARCH, dataset.n_items, 0.0), dataset.split(), config(epochs=1), tmp_path / "fp32")
    assert not any("bf16" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("kw,field", [
    ({"epochs": 0}, "--epochs"), ({"batch_size": 0}, "--batch-size"), ({"lr": 0.0}, "--lr"),
    ({"loss": "mse"}, "--loss"), ({"patience": 0}, "--patience"), ({"beta2": 1.0}, "--beta2"),
    ({"grad_clip": -1.0}, "--grad-clip"), ({"plateau_factor": 1.5}, "--plateau-factor"), ({"plateau_evals": 0}, "--plateau-evals"),
    ({"schedule": "linear"}, "--schedule"), ({"ema": 1.0}, "--ema"), ({"ema": -0.1}, "--ema"),
    ({"precision": "fp16"}, "--precision"),
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


# --- whole-history exclusion (issue 9) -------------------------------------------------------------------

def long_history_split() -> Split:
    # User 0: train 9, 1, 2, 3, 4 → valid 5 → test 6. Item 9 is the user's oldest item: outside a window of 3.
    # User 1: train 1, 2 → valid 3 → test 8.
    return Split(train=[np.array([9, 1, 2, 3, 4]), np.array([1, 2])], valid_users=np.array([0, 1]),
                 valid_targets=np.array([5, 3]), test_targets=np.array([6, 8]))


def test_history_longer_than_max_len_excludes_old_item():
    split = long_history_split()
    fn = fixed_score_fn(9)  # item 9 scores highest, then 8, 7, ...
    for max_len in (1, 3, 10):
        ranks = evaluate_ranks(fn, split, "test", max_len)
        # User 0: 9 (oldest, outside the window for max_len < 6) is excluded, 8 and 7 are above 6 → rank 2.
        # User 1: 9 is above its target 8 and was never seen → rank 1.
        assert ranks.tolist() == [2, 1], max_len
        kept = evaluate_ranks(fn, split, "test", max_len, keep_seen=True)
        assert kept.tolist() == [3, 1]
    # Valid: the history is the train part only (9 still excluded for user 0; 4..9 above user 1's target 3).
    assert evaluate_ranks(fn, split, "valid", 2).tolist() == [3, 6]


def test_metrics_do_not_depend_on_max_len_through_exclusion(dataset):
    # A scorer that ignores its input: only the exclusion could make max_len matter, and it must not.
    gen = torch.Generator().manual_seed(0)
    row = torch.rand(dataset.n_items + 1, generator=gen)
    fn = lambda x: row.expand(x.shape[0], -1).clone()  # noqa: E731
    split = dataset.split()
    base = evaluate_scores(fn, split, "test", 200)
    assert evaluate_scores(fn, split, "test", 5) == base
    assert evaluate_scores(fn, split, "test", 5, keep_seen=True) != base


def test_sampled_protocol_never_draws_old_history_items():
    split = long_history_split()
    # Old item 9 scores highest, the target second: drawing 9 as a negative would push the target to rank 1.
    scores = torch.zeros(10)
    scores[9] = 10.0
    target_after = {5: 6, 3: 8}  # the newest input item (the valid target) tells the user: its test target scores 5

    def fn(x):
        return torch.stack([torch.where(torch.arange(10) == target_after[int(last)], 5.0, scores) for last in x[:, -1]])

    pop = np.ones(10)
    pop[9] = 50.0  # 9 would be most of the draws
    ranks = evaluate_ranks(fn, split, "test", 2, protocol="sampled-100", popularity=pop, batch_size=1)
    assert ranks[0] == 0  # user 0 saw 9 outside the window: never a negative
    assert ranks[1] > 50  # user 1 never saw 9: drawn again and again, each copy beats the target


def test_evaluation_fast_on_ml100k_sized_data():
    """The whole-history exclusion is vectorised: building and applying it for 943 x 1682 takes milliseconds."""
    import time

    ds = synthetic_dataset(n_users=943, n_items=1682, mean_len=100, seed=0)
    split = ds.split()
    row = torch.zeros(ds.n_items + 1)
    fn = lambda x: row.expand(x.shape[0], -1).clone()  # noqa: E731
    evaluate_ranks(fn, split, "test", 200)
    t = time.perf_counter()
    evaluate_ranks(fn, split, "test", 200)
    assert time.perf_counter() - t < 0.5


def test_per_user_json_matches_metrics(baseline):
    out, metrics = baseline
    rec = json.loads((out / "per_user.json").read_text())
    assert rec["format"] == "easrec-per-user" and rec["keep_seen"] is False and rec["split"] == "test"
    assert rec["data"]["users"] == 200 and rec["data"]["eval_users"] == len(rec["users"]) == len(rec["ranks"])
    assert len(rec["data"]["targets_sha256"]) == 64 and rec["data"]["interactions"] > 0
    for name in ("hr@5", "ndcg@10", "mrr@10", "hr@20"):
        assert np.mean(rec["metrics"][name]) == pytest.approx(metrics["test"][name], abs=1e-6)
    np.testing.assert_allclose(rec["metrics"]["ndcg@10"], per_user_metrics(np.array(rec["ranks"]))["ndcg@10"], atol=1e-6)


# --- losses for large catalogues ---------------------------------------------------------------------------

def loss_batch(n_items: int = 500):
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, n_items + 1, (8, 20), generator=gen)
    y = torch.randint(1, n_items + 1, (8, 20), generator=gen)
    y[x == 0] = 0
    return x, y


def test_chunked_ce_equals_full_ce_with_gradients():
    torch.manual_seed(0)
    model = SASRec(ARCH, 500, 0.0)
    x, y = loss_batch()

    def run(**kw):
        model.zero_grad()
        loss = model.loss(x, y, **kw)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]

    full, g_full = run()
    chunked, g_chunked = run(chunk_bytes=501 * 4 * 7)  # 7 rows per chunk: many uneven chunks
    assert chunked == pytest.approx(full.item(), rel=1e-5)
    assert len(g_full) == len(g_chunked)
    for a, b in zip(g_full, g_chunked):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_sampled_ce_masks_accidental_hits_and_estimates_full_ce():
    torch.manual_seed(0)
    model = SASRec(ARCH, 500, 0.0)
    x, y = loss_batch()
    full = model.loss(x, y).item()
    gen = torch.Generator().manual_seed(1)
    corrected = model.loss(x, y, kind="sampled-ce", negatives=400, logq=True, generator=gen).item()
    plain = model.loss(x, y, kind="sampled-ce", negatives=400, generator=torch.Generator().manual_seed(1)).item()
    # With log(N / K) added to the negatives, the sampled loss estimates the full one; without it, it is smaller.
    assert corrected == pytest.approx(full, rel=0.05)
    assert plain < corrected
    # Negatives are all the targets themselves: every one is masked, so the loss is ~0, not log(K + 1).
    y1 = torch.where(y != 0, torch.ones_like(y), y)
    model_one = SASRec(ARCH, 1, 0.0)
    assert model_one.loss(x.clamp(max=1), y1, kind="sampled-ce", negatives=16).item() < 1e-3
    with pytest.raises(ValueError, match="negatives"):
        model.loss(x, y, kind="sampled-ce", negatives=0)


def test_sampled_ce_loss_trains(dataset, tmp_path):
    torch.manual_seed(0)
    model = SASRec(ARCH, dataset.n_items, 0.0)
    split = dataset.split()
    before = evaluate_model(model, split, "valid")
    result = train_model(model, split, config(loss="sampled-ce", negatives=64, epochs=2, lr=1e-2), tmp_path)
    losses = [rec["loss"] for rec in result.history]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
    assert result.best_valid["ndcg@10"] > before["ndcg@10"]


# --- the runtime predictor excludes the whole history ------------------------------------------------------

class FakeRunner:
    """Stands in for ExecuTorch / onnxruntime: returns the top-k of fixed scores, excluding the input row."""

    runtime = "fake"
    load_ms = 0.0

    def __init__(self, scores: np.ndarray, k: int):
        self.scores, self.k = scores, k

    def run(self, inputs):
        ids = inputs[0]
        s = np.tile(self.scores, (len(ids), 1))
        np.put_along_axis(s, ids, -1e4, axis=1)
        s[:, 0] = -1e4
        top = np.argsort(-s, axis=1, kind="stable")[:, : self.k]
        return top, np.take_along_axis(s, top, 1).astype(np.float32)


def fake_predictor(n_items: int = 20, max_len: int = 3, k: int = 5):
    from easrec.export.artifact import Predictor

    pred = Predictor.__new__(Predictor)
    pred.path = Path("fake.pte")
    pred.meta = {}
    pred.max_len, pred.k, pred.batch = max_len, k, 1
    pred.raw_items = ["<pad>"] + [f"i{i}" for i in range(1, n_items + 1)]
    pred.index = {raw: i for i, raw in enumerate(pred.raw_items) if i > 0}
    pred.popular = list(range(1, k + 1))
    pred.runner = FakeRunner(np.arange(n_items + 1, dtype=np.float32), k)  # item i scores i
    return pred


def test_predictor_excludes_history_older_than_window(caplog):
    pred = fake_predictor()
    # Window of 3 = i1, i2, i3; i20 and i19 are older: the graph still ranks them first.
    history = ["i20", "i19", "i1", "i2", "i3"]
    top = [r for r, _ in pred.predict(history, k=3)]
    assert top == ["i18", "i17", "i16"]
    with caplog.at_level("WARNING"):
        top5 = [r for r, _ in pred.predict(history)]
    assert top5 == ["i18", "i17", "i16"] and "before the model's window" in caplog.text
    assert [r for r, _ in pred.predict(["i1", "i2"])] == ["i20", "i19", "i18", "i17", "i16"]


def test_sigterm_leaves_a_checkpoint_that_resumes(tmp_path):
    """A job stopped with SIGTERM exits like Ctrl-C: one line, exit 130, its checkpoint kept for `--resume`."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "easrec.cli", "train", "synthetic-small", "--max-len", "20", "--d", "16", "--layers", "1",
           "--heads", "1", "--ffn", "32", "--epochs", "400", "--patience", "400", "--threads", "1", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / CHECKPOINT_FILE).exists() and time.time() < deadline:
        time.sleep(0.2)
    assert (out / CHECKPOINT_FILE).exists(), "no checkpoint written before the deadline"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err
    saved = load_torch(out / CHECKPOINT_FILE)
    assert saved["state"]["epoch"] >= 1 and not (out / MODEL_FILE).exists()
