"""The gates search: constraint behaviour, budget guarantees, refusals, CLI output."""

from __future__ import annotations

import json
import random

import pytest
import torch

from easrec.cli import main
from easrec.cost import ArchProbs, components, space_components
from easrec.cost.flops import FlopsCostModel
from easrec.data import load_dataset
from easrec.errors import EasrecError
from easrec.model import Supernet
from easrec.search.gates import ArchParams, GatesConfig, budget_feasibility, gates_search, keep_probability, project_to_budget
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
    a, b = space.sample(rng), space.sample(rng)
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


def test_infeasible_budget_is_refused_naming_the_smallest_cost():
    cm = FlopsCostModel(TINY, 300)
    floor = cm.cost(cm.cheapest())
    with pytest.raises(EasrecError, match="smallest architecture") as err:
        budget_feasibility(cm, floor * 0.5)
    assert f"{floor:.4g}" in str(err.value)


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
        arch = project_to_budget(space.largest(), alpha, cm, budget)
        assert cm.cost(arch) <= budget
        assert space.contains(arch)


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
    # While over the target, λ does not decrease from one logged step to the next.
    lam = [e["lambda"] for e in trace]
    first_over = trace.index(over[0])
    assert lam[first_over + 1] >= lam[first_over] if first_over + 1 < len(lam) else True
    assert max(lam) > cfg.lambda_init
    assert result.expected_cost <= budget * 1.05
    assert result.predicted_cost <= budget
    assert TINY.contains(result.arch)


def test_search_cli_writes_metrics_with_cost(tmp_path, capsys):
    out = tmp_path / "s"
    code = main(["search", "synthetic-small", "--budget-ratio", "0.05", "--search-epochs", "2", "--epochs", "2",
                 "--threads", "1", "--out", str(out), "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("test", "arch", "budget", "predicted_cost", "unit"):
        assert key in metrics
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
