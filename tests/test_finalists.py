"""The search's finalists: SASRec shapes that fit, a short fine-tune each, the best on validation kept."""

from __future__ import annotations

import json

import pytest
import torch

from easrec.cost.flops import FlopsCostModel
from easrec.data import load_dataset
from easrec.errors import EasrecError
from easrec.model import Supernet
from easrec.search import finalists as fin
from easrec.search.gates import GatesConfig
from easrec.search.run import resolve_budget, search_run
from easrec.space import Arch, LayerArch, SearchSpace
from easrec.train.trainer import TrainConfig

TINY = SearchSpace(max_lens=(10, 20), ds=(16, 32), heads=(1, 2), ffns=(32, 64), depths=(1, 2))


@pytest.fixture(scope="module")
def small_data():
    return load_dataset("synthetic-small")


def test_sasrec_shapes_are_plain_sasrecs_inside_the_space():
    space = SearchSpace()
    shapes = fin.sasrec_shapes(space)
    assert shapes, "the default space holds SASRec-shaped architectures"
    for a in shapes:
        assert space.contains(a)
        assert a.attention == "softmax" and not a.gates
        assert len(set(a.layers)) == 1, "identical layers"
        assert a.layers[0].heads * space.head_size == a.d, "heads fill d"
        assert a.layers[0].ffn == min(4 * a.d, space.ffns[-1])
    # d 48 would need 3 heads of 16, which the default space does not offer.
    assert {a.d for a in shapes} == {16, 32, 64}
    assert len(shapes) == len(space.max_lens) * 3 * len(space.depths)


def test_finalists_are_the_alpha_choice_and_per_length_the_costliest_and_the_widest_fitting_shapes():
    cm = FlopsCostModel(SearchSpace(), 1683)
    budget = resolve_budget(cm, ratio=0.25)
    chosen = Arch(200, 64, (LayerArch(1, 32),) * 2, "softmax", True, 16)
    out = fin.finalists(chosen, cm, budget)
    assert out[0] == (chosen, "alpha")
    archs = [a for a, _ in out]
    assert len(set(archs)) == len(archs), "nothing listed twice"
    for L in cm.space.max_lens:
        fitting = [s for s in fin.sasrec_shapes(cm.space) if s.max_len == L and cm.cost(s) <= budget]
        listed = [(a, why) for a, why in out[1:] if a.max_len == L]
        if not fitting:
            assert not listed
            continue
        assert all(cm.cost(a) <= budget and f"L {L}" in why for a, why in listed)
        widest = max(s.d for s in fitting)
        expected = {max(fitting, key=cm.cost),
                    min((s for s in fitting if s.d == widest), key=lambda s: s.depth),
                    max((s for s in fitting if s.d == widest), key=lambda s: s.depth)}
        assert {a for a, _ in listed} == expected
    # The costliest fitting shape alone would prefer depth to width: the widest one is cheaper here.
    assert any("shallowest" in why and a.depth == 1 for a, why in out[1:])


def test_without_an_alpha_choice_only_the_shapes_are_listed():
    cm = FlopsCostModel(TINY, 200)
    out = fin.finalists(None, cm, cm.cost(TINY.largest()))
    assert out[0] == (None, "alpha") and all(a is not None for a, _ in out[1:])


def test_a_shape_equal_to_the_alpha_choice_is_not_listed_twice():
    cm = FlopsCostModel(TINY, 200)
    budget = cm.cost(TINY.largest())
    shape = max((a for a in fin.sasrec_shapes(TINY) if a.max_len == 20), key=cm.cost)
    archs = [a for a, _ in fin.finalists(shape, cm, budget)]
    assert archs.count(shape) == 1


def test_a_single_finalist_is_taken_without_training(monkeypatch):
    cm = FlopsCostModel(SearchSpace(attentions=("linear",)), 1000)
    chosen = cm.space.smallest()
    candidates = fin.finalists(chosen, cm, cm.cost(cm.space.largest()))
    assert candidates == [(chosen, "alpha")], "no SASRec shape in a linear-attention space"
    monkeypatch.setattr(fin, "train_model", lambda *a, **k: pytest.fail("nothing to compare, nothing to train"))
    winner, rows = fin.choose_finalist(None, None, candidates, TrainConfig(), 2, cm)
    assert winner == chosen and rows[0]["chosen"]


def test_choose_finalist_keeps_the_best_on_validation_and_reuses_its_scores(small_data, tmp_path, monkeypatch):
    torch.manual_seed(0)
    supernet = Supernet(TINY, small_data.n_items, 0.2)
    before = {k: v.clone() for k, v in supernet.state_dict().items()}
    cm = FlopsCostModel(TINY, small_data.n_items)
    candidates = fin.finalists(TINY.smallest(), cm, cm.cost(TINY.largest()))
    # α's choice and, per length, d 32 × 2 (costliest, also the widest deepest) and d 32 × 1 (widest shallowest)
    assert len(candidates) == 1 + 2 * len(TINY.max_lens)
    cfg = TrainConfig(batch_size=64, targets="all", seed=0, threads=1)
    seen = []
    winner, rows = fin.choose_finalist(supernet, small_data.split(), candidates, cfg, 1, cm, tmp_path, on_epoch=seen.append)
    assert [r["arch"] for r in rows] == [a.describe() for a, _ in candidates]
    assert sum(r["chosen"] for r in rows) == 1
    best = max(rows, key=lambda r: r["valid_ndcg@10"])
    assert best["chosen"] and winner.describe() == best["arch"]
    assert {r["arch"] for r in seen} == {a.describe() for a, _ in candidates}
    assert all(torch.equal(before[k], v) for k, v in supernet.state_dict().items()), "the supernet is left as it was"
    saved = json.loads((tmp_path / fin.FINALISTS_FILE).read_text())
    assert saved["chosen"] == winner.describe()

    def no_training(*args, **kwargs):
        raise AssertionError("a resumed choice must not train again")

    monkeypatch.setattr(fin, "train_model", no_training)
    again, rows_again = fin.choose_finalist(supernet, small_data.split(), candidates, cfg, 1, cm, tmp_path)
    assert again == winner and rows_again == rows
    # Other epochs: the stored scores do not apply, so it would train again.
    with pytest.raises(AssertionError, match="must not train again"):
        fin.choose_finalist(supernet, small_data.split(), candidates, cfg, 2, cm, tmp_path)


def test_an_interrupted_contest_trains_only_the_finalists_left(small_data, tmp_path, monkeypatch):
    torch.manual_seed(0)
    supernet = Supernet(TINY, small_data.n_items, 0.2)
    cm = FlopsCostModel(TINY, small_data.n_items)
    candidates = fin.finalists(TINY.smallest(), cm, cm.cost(TINY.largest()))
    cfg = TrainConfig(batch_size=64, targets="all", seed=0, threads=1)
    real, calls = fin.train_model, []

    def interrupted_at_the_second(model, *args, **kwargs):
        calls.append(model.arch.describe())
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(model, *args, **kwargs)

    monkeypatch.setattr(fin, "train_model", interrupted_at_the_second)
    with pytest.raises(KeyboardInterrupt):
        fin.choose_finalist(supernet, small_data.split(), candidates, cfg, 1, cm, tmp_path)
    assert [r["arch"] for r in json.loads((tmp_path / fin.FINALISTS_FILE).read_text())["rows"]] == [candidates[0][0].describe()]
    calls.clear()
    monkeypatch.setattr(fin, "train_model", lambda model, *a, **k: calls.append(model.arch.describe()) or real(model, *a, **k))
    winner, rows = fin.choose_finalist(supernet, small_data.split(), candidates, cfg, 1, cm, tmp_path)
    assert calls == [a.describe() for a, _ in candidates[1:]], "the first finalist's score is reused"
    uninterrupted, _ = fin.choose_finalist(supernet, small_data.split(), candidates, cfg, 1, cm, None)
    assert winner == uninterrupted and sum(r["chosen"] for r in rows) == 1


def test_search_run_records_its_finalists_and_refuses_negative_epochs(small_data, tmp_path):
    cm = FlopsCostModel(TINY, small_data.n_items)
    budget = resolve_budget(cm, ratio=0.6, reference=TINY.largest())
    gcfg = GatesConfig(epochs=1, batch_size=64, seed=0, threads=1)
    ft = TrainConfig(epochs=1, batch_size=64, targets="all", seed=0, threads=1)
    with pytest.raises(EasrecError, match="--finalist-epochs"):
        search_run(small_data, {}, tmp_path / "bad", cost_model=cm, budget=budget, gates_cfg=gcfg, finetune=ft, finalist_epochs=-1)
    metrics = search_run(small_data, {"name": "synthetic-small"}, tmp_path / "s", cost_model=cm, budget=budget, gates_cfg=gcfg,
                         finetune=ft, finalist_epochs=1)
    rows = metrics["finalists"]
    assert rows and rows[0]["why"] == "alpha"
    assert rows[0]["arch"] == Arch.from_dict(metrics["alpha_arch"]).describe()
    chosen = next(r for r in rows if r["chosen"])
    assert metrics["arch_description"] == chosen["arch"]
    assert metrics["predicted_cost"] == pytest.approx(chosen["cost"]) and metrics["predicted_cost"] <= budget
    assert json.loads((tmp_path / "s" / "arch.json").read_text()) == chosen["arch_dict"]
