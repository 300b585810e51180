"""The gates search: constraint behaviour, budget guarantees, refusals, CLI output."""

from __future__ import annotations

import itertools
import json
import math
import random

import pytest
import torch

from easrec.cli import main
from easrec.cost import ArchProbs, CostModel, components, space_components
from easrec.cost.flops import FlopsCostModel
from easrec.data import load_dataset
from easrec.errors import EasrecError
from easrec.model import Supernet
from easrec.search.gates import ArchParams, GatesConfig, budget_feasibility, gates_search, keep_probability, project_to_budget
from easrec.search.projection import grow_within, most_probable_within
from easrec.search.run import resolve_budget
from easrec.space import Arch, LayerArch, SearchSpace, reference_arch

TINY = SearchSpace(max_lens=(10, 20), ds=(16, 32), heads=(1, 2), ffns=(32, 64), depths=(1, 2))


@pytest.fixture(scope="module")
def small_data():
    return load_dataset("synthetic-small")


def one_hot_probs(space: SearchSpace, arch: Arch) -> ArchProbs:
    oh = lambda values, v: torch.tensor([1.0 if x == v else 0.0 for x in values])  # noqa: E731
    layers = list(arch.layers) + [arch.layers[-1]] * (space.depths[-1] - arch.depth)
    return ArchProbs(oh(space.max_lens, arch.max_len), oh(space.ds, arch.d), oh(space.depths, arch.depth),
                     oh(space.attentions, arch.attention), [oh(space.heads, l.heads) for l in layers],
                     [oh(space.ffns, l.ffn) for l in layers])


def test_expected_cost_is_exact_for_one_hot_and_mixes_linearly():
    space = SearchSpace()
    cm = FlopsCostModel(space, 1000)
    rng = random.Random(0)
    a = space.sample(rng)
    assert cm.expected_cost(one_hot_probs(space, a)).item() == pytest.approx(cm.cost(a), rel=1e-5)
    # Uniform α: expectation lies strictly between the cheapest and the most expensive architecture.
    uniform = ArchParams(space).probs(1.0)
    e = cm.expected_cost(uniform).item()
    assert cm.cost(space.smallest()) < e < cm.cost(space.largest())


def test_space_components_cover_every_sampled_arch():
    space = SearchSpace()
    covered = set(space_components(space, [reference_arch()]))
    rng = random.Random(1)
    for _ in range(50):
        assert set(components(space.sample(rng))) <= covered
    assert set(components(reference_arch())) <= covered


def test_keep_probability_is_a_cumulative_mask():
    p = torch.tensor([0.2, 0.3, 0.5])  # widths 1, 2, 4
    keep = keep_probability(p, (1, 2, 4))
    assert torch.allclose(keep, torch.tensor([1.0, 0.8, 0.5, 0.5]))


def test_cheapest_is_the_cheapest_architecture_by_brute_force():
    for cm in (FlopsCostModel(TINY, 300), *(TableCost(TINY, seed) for seed in range(3))):
        costs = [cm.cost(a) for a in all_archs(TINY)]
        assert cm.cost(cm.cheapest()) == pytest.approx(min(costs), rel=1e-12)


def test_infeasible_budget_is_refused_naming_the_smallest_cost():
    cm = FlopsCostModel(TINY, 300)
    floor = min(cm.cost(a) for a in all_archs(TINY))  # brute force, independent of cheapest()
    with pytest.raises(EasrecError, match="smallest architecture") as err:
        budget_feasibility(cm, floor * 0.5)
    assert f"{floor:.4g}" in str(err.value)
    budget_feasibility(cm, floor)  # the cheapest architecture's own cost is feasible


def test_budget_unit_mismatch_is_refused():
    cm = FlopsCostModel(TINY, 300)
    with pytest.raises(EasrecError, match="--budget-ms"):
        resolve_budget(cm, value=3.0, unit="ms")


def test_projection_never_exceeds_the_budget():
    space = SearchSpace()
    cm = FlopsCostModel(space, 1000)
    alpha = ArchParams(space)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in alpha.parameters():
            p.normal_()
    for ratio in (0.05, 0.2, 0.5):
        budget = ratio * cm.cost(space.largest())
        arch = project_to_budget(alpha, cm, budget)
        assert cm.cost(arch) <= budget
        assert space.contains(arch)


class TableCost(CostModel):
    """An additive cost model with random, non-monotone component costs (like a noisy measured table)."""

    unit = "ms"

    def __init__(self, space: SearchSpace, seed: int):
        self.space = space
        self.rng = random.Random(seed)
        self.table: dict = {}

    def component_cost(self, component):
        if component not in self.table:
            self.table[component] = self.rng.uniform(0.01, 1.0)
        return self.table[component]


def all_archs(space: SearchSpace):
    for L, d, kind, depth in itertools.product(space.max_lens, space.ds, space.attentions, space.depths):
        for layers in itertools.product([LayerArch(h, f) for h in space.heads for f in space.ffns], repeat=depth):
            yield Arch(L, d, layers, kind, space.gates, space.head_size)


@pytest.mark.parametrize("seed", range(4))
def test_projection_is_the_most_probable_architecture_within_budget_by_brute_force(seed):
    """Exact on non-monotone costs, where walking towards cheaper neighbours can get stuck."""
    space = SearchSpace(max_lens=(10, 20), ds=(16, 32), heads=(1, 2), ffns=(32, 64), depths=(1, 2, 3),
                        attentions=("softmax", "linear"))
    cm = TableCost(space, seed)
    alpha = ArchParams(space)
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in alpha.parameters():
            p.normal_()
    lp = alpha.log_probs()
    archs = list(all_archs(space))
    costs = [cm.cost(a) for a in archs]
    for q in (0.05, 0.3, 0.7):
        budget = sorted(costs)[int(q * len(costs))]
        feasible = [(lp.score(space, a), a) for a, c in zip(archs, costs) if c <= budget]
        best = max(s for s, _ in feasible)
        got = project_to_budget(alpha, cm, budget)
        assert cm.cost(got) <= budget
        assert lp.score(space, got) == pytest.approx(best, abs=1e-9)
    # The cheapest architecture's cost is always a feasible budget.
    floor = min(costs)
    assert cm.cost(project_to_budget(alpha, cm, floor)) == pytest.approx(floor)
    assert cm.cost(cm.cheapest()) == pytest.approx(floor)


def test_grow_within_spends_the_budget_without_exceeding_it():
    space = SearchSpace()
    cm = FlopsCostModel(space, 1000)
    lp = ArchParams(space).log_probs()
    small = space.smallest()
    budget = 0.5 * cm.cost(space.largest())
    grown = grow_within(cm, lp, small, budget, fill=0.9)
    assert 0.9 * budget <= cm.cost(grown) <= budget
    # An architecture that already spends enough is kept as it is.
    assert grow_within(cm, lp, grown, budget, fill=0.9) == grown
    # Under a factorised distribution a shallow model is more probable, so the plain projection spends less.
    assert cm.cost(most_probable_within(cm, lp, budget)) < cm.cost(grown)


def test_dynamic_constraint_drives_expected_cost_under_budget(small_data):
    """λ grows while the expected cost is over the budget and the final expected cost ends under it."""
    torch.manual_seed(0)
    net = Supernet(TINY, small_data.n_items)
    cm = FlopsCostModel(TINY, small_data.n_items)
    budget = 0.3 * cm.cost(TINY.largest())
    cfg = GatesConfig(epochs=6, batch_size=64, warmup_frac=0.3, arch_lr=0.1, seed=0, threads=1)
    result = gates_search(net, small_data.split(), cm, budget, cfg)
    trace = result.log
    assert trace, "the search logs α, λ and the expected cost"
    over = [e for e in trace if e["expected_cost"] > e["target"]]
    assert over, "starting from uniform α the expected cost is over the tightening target"
    # Dual ascent: every step that is over its target raises λ, every step under it lowers λ (or keeps it at 0).
    pairs = [(a, b) for a, b in zip(trace, trace[1:]) if b["step"] == a["step"] + 1]
    over_pairs = [(a, b) for a, b in pairs if b["expected_cost"] > b["target"]]
    under_pairs = [(a, b) for a, b in pairs if b["expected_cost"] < b["target"]]
    # Both regimes occur in this run, so neither check below can pass on an empty list.
    assert over_pairs and under_pairs, (len(over_pairs), len(under_pairs))
    assert all(b["lambda"] > a["lambda"] for a, b in over_pairs)
    assert all(b["lambda"] <= a["lambda"] for a, b in under_pairs)
    assert result.expected_cost <= budget * 1.05
    assert result.predicted_cost <= budget
    assert TINY.contains(result.arch)


@pytest.mark.slow
def test_search_cli_writes_metrics_with_cost(tmp_path, capsys):
    out = tmp_path / "s"
    code = main(["search", "synthetic-small", "--budget-ratio", "0.05", "--search-epochs", "2", "--epochs", "2", "--targets", "all",
                 "--threads", "1", "--out", str(out), "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("test", "arch", "budget", "predicted_cost", "unit", "finalists"):
        assert key in metrics
    assert sum(r["chosen"] for r in metrics["finalists"]) == 1
    assert metrics["unit"] == "MFLOPs"
    assert metrics["predicted_cost"] <= metrics["budget"]
    assert result["arch"] == json.loads((out / "arch.json").read_text())
    assert (out / "search_log.jsonl").read_text().count("\n") >= 1


def test_search_cli_refuses_infeasible_budget(tmp_path, capsys):
    code = main(["search", "synthetic-small", "--budget-mflops", "0.0001", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2
    assert "infeasible" in err and "smallest architecture" in err
    assert not (tmp_path / "x" / "metrics.json").exists()


def test_arch_outside_space_is_refused_with_field():
    arch = Arch(max_len=20, d=24, layers=(LayerArch(1, 32),), gates=True)
    with pytest.raises(EasrecError, match="'d'"):
        TINY.validate(arch, source="arch.json")


def successor_dataset(n_users: int = 300, length: int = 30, vocab: int = 200, seed: int = 0):
    """Histories where the next item is a fixed successor of the current one (90 %) or random (10 %).

    Predicting it means telling 200 items apart through the tied item table: a width of 32 can, a
    width of 4 cannot, so one width is clearly better and the search must find it from data alone.
    """
    import numpy as np

    from easrec.data.dataset import build_dataset

    rng = random.Random(seed)
    succ = list(range(vocab))
    rng.shuffle(succ)
    users, items, times = [], [], []
    for u in range(n_users):
        seq = [rng.randrange(vocab)]
        while len(seq) < length:
            seq.append(succ[seq[-1]] if rng.random() < 0.9 else rng.randrange(vocab))
        users += [str(u)] * length
        items += [str(x) for x in seq]
        times += list(range(length))
    return build_dataset("successor", "test", np.array(users), np.array(items), np.array(times))


@pytest.mark.slow
def test_search_picks_the_width_that_fits_the_data():
    """The α gradient of a shape choice compares candidates: with no cost pressure, d 32 beats d 4 in ≥ 9 of 10 seeds."""
    data = successor_dataset()
    space = SearchSpace(max_lens=(10,), ds=(4, 32), heads=(1,), ffns=(32,), depths=(1,), attentions=("softmax",),
                        gates=False, head_size=8)
    cm = FlopsCostModel(space, data.n_items)
    picks = []
    for seed in range(10):
        torch.manual_seed(seed)
        net = Supernet(space, data.n_items, dropout=0.0)
        cfg = GatesConfig(epochs=6, batch_size=32, lr=3e-3, arch_lr=0.05, seed=seed, threads=1, fill=0.0)
        result = gates_search(net, data.split(), cm, cm.cost(space.largest()), cfg)
        picks.append(result.argmax_arch.d)
        # The search decided: the width's distribution is no longer uniform.
        assert result.log[-1]["entropy"] < math.log(2) - 0.05
    assert picks.count(32) >= 9, picks


def test_interrupted_search_resumes_to_the_uninterrupted_result(small_data, tmp_path):
    """Ctrl-C after an epoch, then resume: same α, same λ trace, same architecture as a search never stopped."""
    cm = FlopsCostModel(TINY, small_data.n_items)
    budget = 0.4 * cm.cost(TINY.largest())
    cfg = GatesConfig(epochs=3, batch_size=64, seed=0, threads=1)

    def run(out, on_epoch=None, resume=False):
        torch.manual_seed(0)
        net = Supernet(TINY, small_data.n_items)  # dropout on: the resumed run must replay its draws too
        return gates_search(net, small_data.split(), cm, budget, cfg, out, resume=resume, on_epoch=on_epoch)

    full = run(tmp_path / "full")

    def stop(rec):
        if rec["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut", on_epoch=stop)
    resumed = run(tmp_path / "cut", resume=True)
    assert resumed.arch == full.arch
    assert [e["lambda"] for e in resumed.log] == [e["lambda"] for e in full.log]
    assert resumed.log[-1]["expected_cost"] == full.log[-1]["expected_cost"]
