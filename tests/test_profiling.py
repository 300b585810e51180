"""Latency lookup tables: components are the real blocks, the file round-trips, resumes, refuses bad
input naming the field, validation metrics are right, and real torch / executorch builds work."""

from __future__ import annotations

import dataclasses

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from easrec.cost import Component, components, space_components
from easrec.devices import get_device
from easrec.errors import EasrecError
from easrec.export.graph import TopKGraph
from easrec.model.sasrec import SASRec
from easrec.profiling.components import (
    AttentionPart, EmbeddingPart, FeedForwardPart, component_module, design_programs, padded_ids, program_id,
    running_mean,
)
from easrec.profiling.lut import LatencyTable, build_lut, monotonicity_violations
from easrec.profiling.protocol import Settings
from easrec.profiling.validate import (
    evaluate, fit_affine, kendall_tau, noise_floor, sample_archs, score, summarize_rows, validate_lut,
)
from easrec.space import Arch, LayerArch, SearchSpace, reference_arch

TINY = SearchSpace(max_lens=(10, 20), ds=(16, 32), heads=(1, 2), ffns=(32, 64), depths=(1, 2))
FAST = Settings(warmup=2, min_runs=5, max_runs=20, max_seconds=0.2, min_round_seconds=0.0)
N_ITEMS = 100


# ------------------------------------------------------------------ components are the real blocks

@pytest.mark.parametrize("kind", ["softmax", "linear"])
@pytest.mark.parametrize("gates", [False, True])
def test_component_parts_reproduce_sasrec_forward(kind, gates):
    torch.manual_seed(0)
    arch = Arch(20, 32, (LayerArch(2, 64), LayerArch(1, 32)), kind, gates, 16)
    model = SASRec(arch, N_ITEMS).eval()
    ids = padded_ids(20, N_ITEMS)
    with torch.no_grad():
        ref_h = model.encode(ids, last_only=True)
        ref_full = model.encode(ids)
        x0, mask, keep = EmbeddingPart(model, 20, 32)(ids)
        x = AttentionPart(model, 0, arch, last=False)(x0, mask, keep)
        ffn0 = FeedForwardPart(model, 0, arch, last=False, gated=gates)
        x = ffn0(x, keep, x0) if gates else ffn0(x, keep)
        x_inner = x
        x = AttentionPart(model, 1, arch, last=True)(x, mask, keep)
        ffn1 = FeedForwardPart(model, 1, arch, last=True, gated=gates)
        h = ffn1(x, keep, running_mean(x0, keep)[:, -1:]) if gates else ffn1(x, keep)
        assert torch.equal(h, ref_h)
        # The full-sequence path (every block an inner one) reproduces the model's hidden states at every position.
        x = AttentionPart(model, 1, arch, last=False)(x_inner, mask, keep)
        ffn1_full = FeedForwardPart(model, 1, arch, last=False, gated=gates)
        full = ffn1_full(x, keep, x0) if gates else ffn1_full(x, keep)
        assert full.shape == ref_full.shape == (1, 20, 32)
        torch.testing.assert_close(full, ref_full, rtol=1e-5, atol=1e-6)
        scorer, (hh, ids2) = component_module(Component.make("scoring", d=32), N_ITEMS, model=model)
        idx, val = scorer(ref_h, ids)
        ref_idx, ref_val = TopKGraph(model)(ids)
        assert torch.equal(idx, ref_idx) and torch.equal(val, ref_val)


def expected_shapes(c: Component) -> list[tuple[int, ...]]:
    """The output shapes of a component's module (batch 1)."""
    k = dict(c.key)
    L, d = k.get("L"), k.get("d")
    return {
        "overhead": [(1, 50)], "embedding": [(1, L, d), (1, 1, L, L), (1, L)], "scoring": [(1, 10), (1, 10)],
        "attention": [(1, L, d)], "ffn": [(1, L, d)], "gates": [(1, L, d)],
        "last_attention": [(1, 1, d)], "last_ffn": [(1, d)], "last_gates": [(1, d)],
    }[c.name]


def test_every_component_of_the_space_builds_and_runs():
    for c in space_components(TINY):
        module, inputs = component_module(c, N_ITEMS, TINY.head_size)
        with torch.no_grad():
            out = module(*inputs)
            again = module(*inputs)
        outs, agains = (list(out), list(again)) if isinstance(out, tuple) else ([out], [again])
        assert [tuple(o.shape) for o in outs] == expected_shapes(c), c.id()
        for o, a in zip(outs, agains):
            assert torch.equal(o, a), f"{c.id()}: not deterministic"
            if o.is_floating_point():
                assert torch.isfinite(o).all(), c.id()
        if c.name == "overhead":
            assert torch.equal(out, inputs[0] + 1)
        if c.name == "embedding":
            ids = inputs[0]
            assert ids.dtype == torch.int64 and ids[0, 0] == 0  # left padding
            assert torch.equal(out[2].bool(), ids != 0)  # keep marks the real items
        if c.name == "scoring":
            idx, val = out
            assert idx.dtype == torch.int64 and bool((val[:, :-1] >= val[:, 1:]).all())  # top-k, best first


# ------------------------------------------------------------------ the program design

def test_design_pins_down_every_entry_with_one_program_per_measurable_direction():
    from easrec.pipeline import PRESETS

    quick = SearchSpace.from_dict(PRESETS["quick"].space)
    baseline = Arch.from_dict(PRESETS["quick"].baseline)
    design = design_programs(quick, [baseline])
    assert design.programs[0] == ("overhead", None)
    assert len(design.unknowns) == 47 and design.rank == len(design.programs) == 35 and design.gauge == 12
    assert not design.uncovered
    A = design.matrix()
    assert np.linalg.matrix_rank(A) == len(design.programs)  # no program is a combination of others
    # Every program but the overhead is a whole shipped architecture of depth 1 or 2.
    assert all(a is not None and a.depth in (1, 2) for _, a in design.programs[1:])
    # The reference SASRec (head size 32) adds exactly its own attention entries.
    base = design_programs(SearchSpace(), [])
    with_ref = design_programs(SearchSpace(), [reference_arch()])
    assert len(with_ref.unknowns) - len(base.unknowns) == 2 and len(with_ref.programs) - len(base.programs) == 2


# ------------------------------------------------------------------ a fake device and a fake lowering

BASE_MS = {"embedding": 0.02, "attention": 0.05, "last_attention": 0.02, "ffn": 0.03, "last_ffn": 0.01,
           "gates": 0.015, "last_gates": 0.005, "scoring": 0.04, "overhead": 0.03}


def synth_component(c: Component) -> float:
    """A made-up additive device: monotone in every size, linear attention 1.7× softmax."""
    k = dict(c.key)
    size = k.get("L", 10) / 10 * k.get("d", 16) / 16 * k.get("heads", 1) ** 0.5 * (k.get("ffn", 32) / 32) ** 0.5
    return BASE_MS[c.name] * size * (1.7 if k.get("kind") == "linear" else 1.0)


def synth_total(arch: Arch) -> float:
    return sum(synth_component(c) for c in components(arch))


class FakeStats:
    def __init__(self, ms, runs=7):
        self.median_ms, self.p10_ms, self.p90_ms, self.runs = ms, ms, ms, runs
        self.samples_ms = [ms] * runs
        self.load_ms, self.first_ms = 1.0, 2 * ms


class FakeDevice:
    """Latency = the synthetic additive model of the program a (fake-lowered) file holds."""

    kind = "fake"

    def __init__(self, cpu="Fake CPU", outliers=None):
        self.cpu = cpu
        self.calls = 0
        self.measured: list[str] = []
        self.outliers = dict(outliers or {})  # program id -> (factor, number of calls it applies to)

    def info(self):
        return {"kind": "cpu", "spec": "cpu", "cpu": self.cpu, "cores": 2, "threads": 1, "os": "Linux", "machine": "x86_64"}

    def measure(self, artifact, inputs, **kw):
        self.calls += 1
        desc = json.loads(open(artifact).read())
        if "canary" in desc:
            return FakeStats(0.1)
        if "overhead" in desc:
            pid, ms = "overhead", BASE_MS["overhead"]
        else:
            arch = Arch.from_dict(desc["arch"])
            pid, ms = program_id(arch), synth_total(arch)
        self.measured.append(pid)
        factor, n = self.outliers.get(pid, (1.0, 0))
        if n > 0:
            self.outliers[pid] = (factor, n - 1)
            ms *= factor
        return FakeStats(ms)


LOWERED: list[str] = []


def fake_lower_file(module, example_inputs, path, runtime="executorch", dtype="fp32", **options):
    """Stands in for ExecuTorch/torch lowering: writes what the graph is, so FakeDevice can time it."""
    from easrec.profiling.components import Overhead
    from easrec.profiling.protocol import CanaryGraph

    if isinstance(module, CanaryGraph):
        desc = {"canary": True, "arch": module.model.arch.to_dict(), "n_items": module.model.n_items}
    elif isinstance(module, TopKGraph):
        desc = {"arch": module.model.arch.to_dict()}
    elif isinstance(module, Overhead):
        desc = {"overhead": True}
    else:
        desc = {"module": type(module).__name__}
    LOWERED.append(json.dumps(desc))
    path = Path(path)
    path.write_text(json.dumps(desc))
    return {"runtime": runtime, "dtype": dtype}


@pytest.fixture(autouse=False)
def fake_lowering(monkeypatch):
    import easrec.export.lowering as lowering

    LOWERED.clear()
    monkeypatch.setattr(lowering, "lower_file", fake_lower_file)
    return LOWERED


SMALL = SearchSpace(max_lens=(10, 20), ds=(16, 32), heads=(1, 2), ffns=(32, 64), depths=(1, 2),
                    attentions=("softmax", "linear"))
FAKE = Settings(warmup=1, min_runs=3, max_runs=6, max_seconds=0.1, rounds=3, canary_runs=1, min_round_seconds=0.0)


def _build(tmp_path, device=None, progress=None, space=SMALL, cache="cache", out="lut.json", settings=FAKE):
    return build_lut(device or FakeDevice(), space, "torch", "fp32", N_ITEMS, 1, tmp_path / out,
                     progress=progress, settings=settings, workers=0, extra=[], chunk=4,
                     cache=None if cache is None else tmp_path / cache)


def test_entries_solved_from_whole_programs_reproduce_every_architecture(tmp_path, fake_lowering):
    table = _build(tmp_path)
    data = table.data
    design = design_programs(SMALL, [])
    assert set(data["programs"]) == {p for p, _ in design.programs}
    assert set(table.entries) == {c.id() for c in space_components(SMALL)}
    assert all(e["median_ms"] >= 0 and e["p10_ms"] <= e["median_ms"] <= e["p90_ms"] for e in table.entries.values())
    # The device is additive: the solved table predicts every architecture exactly, measured or not,
    # and the runtime's per-call overhead is counted once per model.
    rng = __import__("random").Random(5)
    for _ in range(40):
        arch = SMALL.sample(rng)
        assert table.raw_cost(arch) == pytest.approx(synth_total(arch), rel=1e-6)
    assert table.entries["overhead"]["median_ms"] == pytest.approx(BASE_MS["overhead"])
    # Differences that whole programs measure come out exactly (here: one more head in the last block).
    la = lambda h: table.entries[f"last_attention/L=20/d=32/heads={h}/hs=16/kind=linear"]["median_ms"]  # noqa: E731
    truth = lambda h: synth_component(Component.make("last_attention", L=20, d=32, heads=h, hs=16, kind="linear"))  # noqa: E731
    assert la(2) - la(1) == pytest.approx(truth(2) - truth(1), rel=1e-6)
    assert data["solve"]["max_rel_residual"] < 1e-6 and data["monotonicity"]["final_violations"] == 0
    # The file says how the time went and how loaded the machine was.
    assert data["timing"]["graphs_lowered"] == len(design.programs) + 1  # + the canary
    assert data["timing"]["lowering_s"] >= 0 and data["timing"]["measuring_s"] > 0
    assert data["load_average"]["build"]["cores"] and data["sessions"][-1]["programs_measured"] == len(design.programs)
    assert data["canary_ref_ms"] == pytest.approx(0.1) and data["method"] == "in-context-1"


def test_deep_programs_are_extra_rows_that_keep_an_additive_device_exact(tmp_path, fake_lowering):
    """deep=True also measures three- and four-block programs; they add no rank, and on an additive device the
    over-determined solve still reproduces every architecture."""
    basis = design_programs(SMALL, [])
    deep = design_programs(SMALL, [], deep=True)
    added = deep.programs[len(basis.programs):]
    assert deep.programs[:len(basis.programs)] == basis.programs and deep.rank == basis.rank
    assert added and all(a.depth in (3, 4) for _, a in added)
    assert len({p for p, _ in deep.programs}) == len(deep.programs)
    table = build_lut(FakeDevice(), SMALL, "torch", "fp32", N_ITEMS, 1, tmp_path / "lut.json", settings=FAKE, workers=0,
                      extra=[], chunk=4, cache=tmp_path / "cache", deep=True)
    assert set(table.data["programs"]) == {p for p, _ in deep.programs} and table.data["design"]["deep"] is True
    rng = __import__("random").Random(7)
    for _ in range(20):
        arch = SMALL.sample(rng)
        assert table.raw_cost(arch) == pytest.approx(synth_total(arch), rel=1e-6)


def test_an_outlier_program_is_remeasured_until_monotone(tmp_path, fake_lowering):
    victim = "program/L=10/d=16/kind=softmax/hs=16/gates=0/layers=1x32"
    dev = FakeDevice(outliers={victim: (3.0, FAKE.rounds)})  # slow for its whole first session
    table = _build(tmp_path, dev)
    mono = table.data["monotonicity"]
    assert mono["initial_violations"] > 0 and mono["final_violations"] == 0
    assert victim in mono["passes"][0]["remeasured"]
    assert dev.measured.count(victim) == 2 * FAKE.rounds  # measured again, once
    sessions = table.data["programs"][victim]["sessions"]
    assert len(sessions) == 2 and sessions[0]["median_ms"] == pytest.approx(3 * sessions[1]["median_ms"])
    arch = Arch(10, 16, (LayerArch(1, 32),), "softmax", False, 16)
    assert table.raw_cost(arch) == pytest.approx(synth_total(arch), rel=1e-6)
    # Without re-measurement the outlier would have stayed in the table.
    dev2 = FakeDevice(outliers={victim: (3.0, FAKE.rounds)})
    stuck = _build(tmp_path, dev2, out="noremeasure.json", settings=Settings(**{**FAKE.to_dict(), "remeasure_passes": 0}))
    assert stuck.data["monotonicity"]["final_violations"] > 0
    assert abs(stuck.raw_cost(arch) / synth_total(arch) - 1) > 0.1


def test_entry_monotonicity_compares_only_measured_differences():
    entries = {
        "last_ffn/d=16/ffn=32": {"median_ms": 0.5, "sigma_ms": 0.001},
        "last_ffn/d=16/ffn=64": {"median_ms": 0.2, "sigma_ms": 0.001},
        "last_ffn/d=32/ffn=32": {"median_ms": 0.6, "sigma_ms": 0.001},
        "scoring/d=16": {"median_ms": 0.30, "sigma_ms": 0.01},
        "scoring/d=32": {"median_ms": 0.29, "sigma_ms": 0.01},  # within noise
    }
    bad = monotonicity_violations(entries)
    assert [(v["smaller"], v["larger"]) for v in bad] == [("last_ffn/d=16/ffn=32", "last_ffn/d=16/ffn=64")]
    # With a null space where the d=16 and d=32 last-FFN entries move apart, nothing is comparable across d.
    unknowns = list(entries)
    null = np.zeros((5, 1))
    null[0, 0] = null[1, 0] = 1.0
    assert monotonicity_violations(entries, null=null, unknowns=unknowns)[0]["smaller"] == "last_ffn/d=16/ffn=32"
    null[1, 0] = 0.0
    assert monotonicity_violations(entries, null=null, unknowns=unknowns) == []


def test_resume_after_ctrl_c_never_remeasures(tmp_path, fake_lowering):
    def interrupt(done, total, what):
        if done >= 9:
            raise KeyboardInterrupt

    dev = FakeDevice()
    with pytest.raises(KeyboardInterrupt):
        _build(tmp_path, dev, interrupt)
    kept = json.loads((tmp_path / "lut.json").read_text())["programs"]
    assert len(kept) >= 8  # written after every group of 4 programs, before progress is reported
    lowered_first = len(fake_lowering)
    dev2 = FakeDevice()
    table = _build(tmp_path, dev2)
    assert not set(dev2.measured) & set(kept)  # nothing measured twice
    assert set(dev2.measured) | set(kept) == set(table.data["programs"])
    for pid, rec in kept.items():
        assert table.data["programs"][pid]["median_ms"] == rec["median_ms"]
    assert len(fake_lowering) == lowered_first  # every graph came from the lowering cache
    assert table.data["timing"]["graphs_from_cache"] > 0 and len(table.data["sessions"]) == 2
    dev3 = FakeDevice()
    _build(tmp_path, dev3)
    assert dev3.calls == 0  # a complete table is not measured again


def test_cached_graphs_are_not_lowered_twice(tmp_path, fake_lowering):
    _build(tmp_path, out="a.json")
    n = len(fake_lowering)
    assert n == len(design_programs(SMALL, []).programs) + 1
    table = _build(tmp_path, out="b.json")  # another table, same graphs: all from the cache
    assert len(fake_lowering) == n
    assert table.data["timing"]["graphs_lowered"] == 0 and table.data["timing"]["graphs_from_cache"] == n
    _build(tmp_path, out="c.json", cache=None)  # no cache: lowered again
    assert len(fake_lowering) == 2 * n


def test_lowering_cache_keys_on_content(tmp_path, monkeypatch):
    import easrec.export.lowering as lowering

    calls = []
    real = lowering.lower_file
    monkeypatch.setattr(lowering, "lower_file", lambda *a, **k: calls.append(1) or real(*a, **k))
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU()).eval()
    x = (torch.randn(1, 8),)
    p1 = lowering.lower(m, x, tmp_path / "a.pt2", "torch", cache=tmp_path / "c")
    p2 = lowering.lower(m, x, tmp_path / "b.pt2", "torch", cache=tmp_path / "c")
    assert len(calls) == 1 and p1.read_bytes() == p2.read_bytes()  # the second came from the cache
    monkeypatch.setenv("EASREC_CACHE", str(tmp_path / "env"))
    assert lowering.lowering_cache_dir() == tmp_path / "env" / "lowered"
    with torch.no_grad():
        m[0].weight[0, 0] += 1.0  # other weights: another graph
    lowering.lower(m, x, tmp_path / "c.pt2", "torch", cache=tmp_path / "c")
    assert len(calls) == 2
    lowering.lower(m, (torch.randn(2, 8),), tmp_path / "d.pt2", "torch", cache=tmp_path / "c")
    assert len(calls) == 3  # other input shape
    lowering.lower(m, x, tmp_path / "e.pt2", "torch")  # default: no cache, unchanged behaviour
    assert len(calls) == 4
    # The key does not depend on which exporters this process happened to import before.
    import sys

    key = lowering.content_hash(m, x, "torch", "fp32")
    for name in ("easrec.export.executorch", "easrec.export.onnx"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    assert lowering.content_hash(m, x, "torch", "fp32") == key
    # Every lowering option is part of the key; an option at its default keys as if left out.
    assert lowering.content_hash(m, x, "torch", "fp32", int8_recipe="small") == key
    assert lowering.content_hash(m, x, "torch", "fp32", int8_recipe="fast") != key
    assert lowering.content_hash(m, x, "torch", "fp32", embedding_bits=4) != key
    with pytest.raises(TypeError, match="bogus"):
        lowering.content_hash(m, x, "torch", "fp32", bogus=1)
    lowering.lower(m, x, tmp_path / "f.pt2", "torch", cache=tmp_path / "c", int8_recipe="fast")
    assert len(calls) == 5


def test_lowering_cache_keys_on_the_model_helpers_source(monkeypatch):
    """An edit to `easrec.model.functional` (the blocks' tensor functions) must invalidate cached graphs."""
    import easrec.export.lowering as lowering
    import easrec.model.functional as functional

    m = SASRec(Arch(20, 16, (LayerArch(1, 32),)), 30).eval()
    x = (torch.ones(1, 20, dtype=torch.long),)
    key = lowering.content_hash(m, x, "torch", "fp32")
    monkeypatch.setitem(lowering._SOURCE_HASHES, functional.__file__, "edited")
    assert lowering.content_hash(m, x, "torch", "fp32") != key


def test_validation_reports_noise_floor_and_picks_a_correction(tmp_path, fake_lowering):
    _build(tmp_path)
    res = validate_lut(tmp_path / "lut.json", FakeDevice(), 12, settings=FAKE, workers=0, cache=tmp_path / "cache")
    assert res["n_subnets"] == 12
    floor = res["noise_floor"]
    assert floor["n"] == 10 and floor["within_10pct"] == 1.0  # the fake device repeats itself exactly
    assert sum(r.get("retest_ms") is not None for r in res["subnets"]) == 10
    assert res["lut"]["test"]["within_10pct"] == 1.0  # additive device, additive table
    assert res["corrections"]["chosen"] in ("none", "affine", "per_type")
    assert res["load_average"]["cores"] and res["timing"]["measuring_s"] > 0
    from easrec.cli.profile import validation_rows

    rows = dict(validation_rows(res))  # what `easrec profile validate` prints
    assert rows["noise floor (test-retest within ±10 %)"] == "100 % of 10 subnets"
    assert rows["correction chosen"].startswith(res["corrections"]["chosen"])
    assert "lowering" in rows["time (s)"] and "cores" in rows["load average"]
    data = json.loads((tmp_path / "lut.json").read_text())
    assert data["correction"]["selected_by"] == "MAPE of 5-fold cross-validation" and data["load_average"]["validation"]
    for r in res["subnets"]:
        assert r["lut_sum_ms"] == pytest.approx(sum(r["type_sums"].values()))
        assert r["predicted_ms"] == pytest.approx(LatencyTable.load(tmp_path / "lut.json").cost(Arch.from_dict(r["arch"])))


def test_validation_of_a_gated_space_measures_ungated_subnets_and_sasrec_shapes_too(tmp_path, fake_lowering):
    from easrec.profiling.validate import validation_archs

    deep = dataclasses.replace(SMALL, depths=(3, 4))
    archs = validation_archs(deep, 12, seed=0)
    assert len({a.hash() for a in archs}) == len(archs)
    assert sum(a.gates for a in archs) == 6 and sum(not a.gates for a in archs) == 6
    uniform = [a for a in archs if len(set(a.layers)) == 1]
    # Every fourth is a SASRec shape (random deep subnets of this space are almost never uniform).
    assert len(uniform) >= 3 and all(not a.gates for a in uniform)
    assert all(not a.gates for a in validation_archs(dataclasses.replace(SMALL, gates=False), 6))
    _build(tmp_path)
    res = validate_lut(tmp_path / "lut.json", FakeDevice(), 8, settings=FAKE, workers=0, cache=None)
    assert {r["arch"]["gates"] for r in res["subnets"]} == {True, False}


def test_a_new_table_times_a_canary_of_its_own_space_and_an_old_table_keeps_the_small_one(tmp_path, fake_lowering):
    from easrec.profiling.canary import SMALL as SMALL_CANARY, canary_spec

    _build(tmp_path)
    data = json.loads((tmp_path / "lut.json").read_text())
    spec = data["canary_spec"]
    assert spec == canary_spec(SMALL, N_ITEMS) and spec["n_items"] == N_ITEMS
    arch = Arch.from_dict(spec["arch"])
    assert arch.max_len in SMALL.max_lens and arch.d in SMALL.ds and arch.depth in SMALL.depths and not arch.gates
    canaries = [json.loads(x) for x in fake_lowering if json.loads(x).get("canary")]
    assert canaries and all(c["arch"] == spec["arch"] and c["n_items"] == N_ITEMS for c in canaries)
    # A table built before canary specs: validated with the small canary its canary_ref_ms was measured with.
    del data["canary_spec"]
    (tmp_path / "old.json").write_text(json.dumps(data))
    fake_lowering.clear()
    validate_lut(tmp_path / "old.json", FakeDevice(), 4, settings=FAKE, workers=0, cache=None)
    canaries = [json.loads(x) for x in fake_lowering if json.loads(x).get("canary")]
    assert canaries and all(c["arch"] == SMALL_CANARY.to_dict() and c["n_items"] == 1000 for c in canaries)
    # A broken spec is refused in one line naming the field, before anything is measured.
    data["canary_spec"] = {"arch": {"max_len": 10}, "n_items": 5}
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(EasrecError, match="field 'canary_spec'"):
        LatencyTable.load(tmp_path / "bad.json")


def test_refit_chooses_the_correction_again_from_the_stored_validation_without_measuring(tmp_path, fake_lowering):
    from easrec.cli import main as cli_main
    from easrec.profiling.validate import refit_correction

    _build(tmp_path)
    path = tmp_path / "lut.json"
    with pytest.raises(EasrecError, match=r"lut\.json: field 'validation\.subnets' is missing"):
        refit_correction(path)
    validate_lut(path, FakeDevice(), 12, settings=FAKE, workers=0, cache=tmp_path / "cache")
    data = json.loads(path.read_text())
    measured = [r["measured_ms"] for r in data["validation"]["subnets"]]
    data["correction"] = {"kind": "none", "a": 1.0, "b": 0.0}
    for r in data["validation"]["subnets"]:  # a device that pays 0.5 ms per block beyond the entries
        r["measured_ms"] += 0.5 * len(r["arch"]["layers"])
    path.write_text(json.dumps(data))
    res = refit_correction(path)
    assert res["refit"]["from"] == "none" and res["corrections"]["chosen"] == "affine_blocks"
    assert [r["measured_ms"] for r in res["subnets"]] == pytest.approx([m + 0.5 * len(r["arch"]["layers"])
                                                                         for m, r in zip(measured, res["subnets"])])
    table = LatencyTable.load(path)
    assert table.data["correction"]["kind"] == "affine_blocks" and table.per_block == pytest.approx(0.5, rel=0.05)
    for r in res["subnets"]:
        assert table.cost(Arch.from_dict(r["arch"])) == pytest.approx(r["measured_ms"], rel=0.02)
    assert res["timing"] == data["validation"]["timing"]  # the measurement's own record is kept
    assert cli_main(["profile", "validate", str(path), "--refit", "--json"]) == 0


def test_refusals_name_the_field(tmp_path, fake_lowering):
    _build(tmp_path)
    path = tmp_path / "lut.json"
    other = SearchSpace(max_lens=(10, 20, 30), ds=(16, 32), heads=(1, 2), ffns=(32, 64), depths=(1, 2))
    with pytest.raises(EasrecError, match=r"field 'space'.*missing entries: .*L=30"):
        LatencyTable.load(path, space=other)
    with pytest.raises(EasrecError, match=r"device\.cpu"):
        LatencyTable.load(path, device_info={"cpu": "Another CPU"})
    with pytest.raises(EasrecError, match=r"device\.runtime"):
        LatencyTable.load(path, device_info={"runtime": "executorch"})
    with pytest.raises(EasrecError, match=r"device\.cpu"):
        _build(tmp_path, FakeDevice(cpu="Another CPU"))  # resuming on another device is refused too

    def refused(text, pattern):
        bad = tmp_path / "bad.json"
        bad.write_text(text)
        with pytest.raises(EasrecError, match=pattern) as info:
            LatencyTable.load(bad)
        assert "\n" not in str(info.value) and str(bad) in str(info.value)  # one line naming the file

    def edited(mutate, pattern):
        data = json.loads(path.read_text())
        mutate(data)
        refused(json.dumps(data), pattern)

    cid = "overhead"
    edited(lambda d: d["entries"][cid].pop("median_ms"), r"entries\['overhead'\]\.median_ms' is missing")
    edited(lambda d: d["entries"][cid].update(p10_ms=d["entries"][cid]["median_ms"] + 1), r"entries\['overhead'\]' is inconsistent")
    edited(lambda d: d["entries"][cid].update(median_ms=-1.0), r"entries\['overhead'\]\.median_ms' must be a non-negative")
    edited(lambda d: d["entries"]["scoring/d=16"].update(median_ms=float("nan")),
           r"entries\['scoring/d=16'\]\.median_ms' must be a non-negative number, got nan")
    edited(lambda d: d["entries"]["scoring/d=16"].update(p90_ms=float("inf")), r"entries\['scoring/d=16'\]\.p90_ms'")
    edited(lambda d: d["entries"].pop("scoring/d=16"), r"field 'entries' does not cover .*scoring/d=16")
    edited(lambda d: d.update(space_hash="abc"), r"field 'space_hash'")
    edited(lambda d: d["space"].update(ds=[32, 16]), r"field 'space' is not a search space")
    edited(lambda d: d.update(correction={"a": -1, "b": 0}), r"field 'correction'")
    edited(lambda d: d.update(correction={"kind": "per_type", "a": 1, "b": 0, "factors": {"ffn": -2}}),
           r"field 'correction\.factors\.ffn' must be a non-negative")
    edited(lambda d: d.update(correction={"kind": "per_type", "a": 1, "b": 0, "factors": {"conv": 1}}),
           r"field 'correction\.factors\.conv' names an unknown")
    edited(lambda d: d.update(correction={"kind": "magic", "a": 1, "b": 0}), r"field 'correction\.kind'")
    edited(lambda d: d.update(correction={"kind": "affine_blocks", "a": 1, "b": 0}), r"field 'correction\.per_block' must be a number")
    edited(lambda d: d.pop("n_items"), r"missing field 'n_items'")
    edited(lambda d: d["device"].pop("dtype"), r"missing field 'device\.dtype'")
    text = path.read_text()
    refused(text[: len(text) // 2], r"not valid JSON at line \d+ column \d+ .*truncated")
    refused("", r"empty file")
    refused("[1, 2]", r"expected a JSON object")


# ------------------------------------------------------------------ the correction

def test_per_type_correction_is_picked_when_types_scale_differently_and_stays_additive(tmp_path, fake_lowering):
    table = _build(tmp_path)
    rng = __import__("random").Random(1)
    archs = sample_archs(SMALL, 40, seed=3)
    truth = {t: 1.0 for t in BASE_MS}
    truth.update(attention=1.8, last_attention=1.4, scoring=0.7)  # the device differs per type
    rows = []
    for a in archs:
        sums = table.type_sums(a)
        m = sum(truth[t] * v for t, v in sums.items()) * (1 + rng.uniform(-0.01, 0.01))
        rows.append({"arch": a.to_dict(), "measured_ms": m, "lut_sum_ms": table.raw_cost(a), "type_sums": sums,
                     "mflops": 1.0})
    res = summarize_rows(rows)
    cands = res["corrections"]["candidates"]
    assert res["corrections"]["chosen"] == "per_type"
    assert cands["per_type"]["test"]["mape_pct"] < cands["affine"]["test"]["mape_pct"] < cands["none"]["test"]["mape_pct"]
    assert res["lut"]["test"]["within_10pct"] == 1.0
    f = cands["per_type"]["params"]["factors"]
    # Inner attention varies independently of the rest (depth, L, heads): its factor is recovered. Parts every
    # model has once (scoring, embedding, last block) are collinear with the intercept: the ridge keeps them near 1.
    assert f["attention"] == pytest.approx(1.8, rel=0.1)
    assert f["gates"] == f["ffn"] and f["last_gates"] == f["last_ffn"]  # tied: never apart in a gated space
    # Stored in the table, it is applied per component: cost stays a sum, expected_cost stays exact.
    table.data["correction"] = {**cands["per_type"]["params"], "b": 0.05}
    arch = archs[0]
    assert table.cost(arch) == pytest.approx(sum(table.component_cost(c) for c in components(arch)))
    assert table.cost(arch) == pytest.approx(sum(f[t] * v for t, v in table.type_sums(arch).items()) + 0.05)
    _check_expected_cost_is_exact(table)


def test_affine_blocks_correction_is_picked_when_every_block_costs_extra_and_stays_additive(tmp_path, fake_lowering):
    table = _build(tmp_path)
    rng = __import__("random").Random(2)
    archs = sample_archs(SMALL, 40, seed=4)
    rows = []
    for a in archs:
        # A device that pays 0.3 ms per block beyond what the blocks' entries sum to (plus 1 % noise).
        m = (1.1 * table.raw_cost(a) + 0.2 + 0.3 * a.depth) * (1 + rng.uniform(-0.01, 0.01))
        rows.append({"arch": a.to_dict(), "measured_ms": m, "lut_sum_ms": table.raw_cost(a), "type_sums": table.type_sums(a),
                     "mflops": 1.0})
    res = summarize_rows(rows)
    cands = res["corrections"]["candidates"]
    assert res["corrections"]["chosen"] == "affine_blocks"
    assert cands["affine_blocks"]["test"]["mape_pct"] < cands["affine"]["test"]["mape_pct"]
    params = cands["affine_blocks"]["params"]
    assert params["per_block"] == pytest.approx(0.3, rel=0.15) and params["a"] == pytest.approx(1.1, rel=0.05)
    assert res["lut"]["per_block"] == params["per_block"] and res["lut"]["test"]["within_10pct"] == 1.0
    # Stored in the table, the per-block term is paid once per block: cost stays a sum, expected_cost exact.
    table.data["correction"] = dict(params)
    arch = archs[0]
    assert table.cost(arch) == pytest.approx(params["a"] * table.raw_cost(arch) + params["b"] + params["per_block"] * arch.depth)
    assert table.cost(arch) == pytest.approx(sum(table.component_cost(c) for c in components(arch)))
    _check_expected_cost_is_exact(table)
    # Rows without architectures (older validation files) cannot fit it: the other kinds still compete.
    bare = [{k: v for k, v in r.items() if k != "arch"} for r in rows]
    assert "affine_blocks" not in summarize_rows(bare)["corrections"]["candidates"]


def _check_expected_cost_is_exact(table):
    """E[cost] from `expected_cost` equals the brute-force expectation over every architecture."""
    import itertools

    from easrec.cost import ArchProbs

    sp = table.space
    g = torch.Generator().manual_seed(0)

    def p(n):
        return torch.softmax(torch.randn(n, generator=g).double(), 0)

    probs = ArchProbs(p(len(sp.max_lens)), p(len(sp.ds)), p(len(sp.depths)), p(len(sp.attentions)),
                      [p(len(sp.heads)) for _ in range(sp.depths[-1])], [p(len(sp.ffns)) for _ in range(sp.depths[-1])])
    brute = 0.0
    for (li, L), (di, d), (ki, kind), (ni, depth) in itertools.product(
            enumerate(sp.max_lens), enumerate(sp.ds), enumerate(sp.attentions), enumerate(sp.depths)):
        for layers in itertools.product(itertools.product(range(len(sp.heads)), range(len(sp.ffns))), repeat=depth):
            w = probs.max_len[li] * probs.d[di] * probs.attention[ki] * probs.depth[ni]
            for i, (hi, fi) in enumerate(layers):
                w = w * probs.heads[i][hi] * probs.ffn[i][fi]
            arch = Arch(L, d, tuple(LayerArch(sp.heads[hi], sp.ffns[fi]) for hi, fi in layers), kind, sp.gates, sp.head_size)
            brute += float(w) * table.cost(arch)
    assert float(table.expected_cost(probs)) == pytest.approx(brute, rel=1e-9)


def test_affine_correction_keeps_its_meaning(tmp_path, fake_lowering):
    again = _build(tmp_path)
    arch = SMALL.sample(__import__("random").Random(3))
    again.data["correction"] = {"a": 2.0, "b": 1.0}  # a file written before per-type factors
    assert again.correction == (2.0, 1.0)
    assert again.cost(arch) == pytest.approx(2 * again.raw_cost(arch) + 1)
    assert again.cost(arch) == pytest.approx(sum(again.component_cost(c) for c in components(arch)))


# ------------------------------------------------------------------ the timing protocol

def test_interleaved_rounds_normalise_by_the_canary_of_the_same_round():
    from easrec.devices.timing import RoundTimes, interleaved_rounds, summarize_rounds

    order = []
    speed = {"r": 1.0}

    def slot(name, ms):
        def run():
            order.append(name)
            return ms * speed["r"]
        return run

    def slow_round(r):
        speed["r"] = 1.5 if r == 0 else 1.0  # the machine is 1.5× slower for the second round only

    times, can = interleaved_rounds([slot("a", 2.0), slot("b", 4.0)], rounds=3, canary=slot("c", 1.0), seed=0,
                                    on_round=slow_round)
    assert order[0] == "c" and order.count("c") == 6 and order.count("a") == 3  # canary before every slot
    assert times[0] == [2.0, 3.0, 2.0] and can[0] == [1.0, 1.5, 1.0]
    s = summarize_rounds(RoundTimes(times[0], can[0], 5), canary_ref_ms=1.0)
    assert s["median_ms"] == pytest.approx(2.0) and s["p90_ms"] == pytest.approx(2.0)  # the slow round is gone
    raw = summarize_rounds(RoundTimes(times[0], can[0], 5), canary_ref_ms=1.0, normalize=False)
    assert raw["p90_ms"] > 2.5 and s["runs"] == 15 and s["raw_median_ms"] == 2.0


def test_short_rounds_are_spread_over_time():
    from easrec.devices.timing import interleaved_rounds

    now, slept = [0.0], []

    def slot():
        now[0] += 0.1  # a round of two slots takes 0.2 s
        return 1.0

    interleaved_rounds([slot, slot], rounds=3, min_round_seconds=0.5, clock=lambda: now[0],
                       sleep=lambda s: slept.append(round(s, 9)) or now.__setitem__(0, now[0] + s))
    assert slept == [0.3, 0.3]  # no pause after the last round


def test_noise_floor_counts_pairs_within_ten_percent():
    rows = [{"measured_ms": 1.0, "retest_ms": 1.05}, {"measured_ms": 2.0, "retest_ms": 2.5},
            {"measured_ms": 1.0, "retest_ms": None}, {"measured_ms": 1.0, "retest_ms": 0.92}]
    floor = noise_floor(rows)
    assert floor["n"] == 3 and floor["within_10pct"] == pytest.approx(2 / 3)
    assert floor["max_err_pct"] == pytest.approx(25.0)


# ------------------------------------------------------------------ metrics

def test_metrics_on_synthetic_numbers():
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3, 4], [40, 30, 20, 10]) == pytest.approx(-1.0)
    assert kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=30), rng.normal(size=30)
    y[:5] = y[5]  # ties
    assert kendall_tau(x, y) == pytest.approx(scipy_stats.kendalltau(x, y).statistic)
    # An exact affine relation is recovered and scores perfectly.
    pred = np.array([1.0, 2, 3, 4, 5, 6, 7, 8])
    meas = 1.5 * pred + 0.3
    a, b = fit_affine(pred, meas)
    assert (a, b) == (pytest.approx(1.5), pytest.approx(0.3))
    ev = evaluate(pred, meas, [0, 2, 4, 6], [1, 3, 5, 7])
    assert ev["test"]["within_10pct"] == 1.0 and ev["test"]["mape_pct"] == pytest.approx(0, abs=1e-9)
    # Share within ±10 %: errors 5 %, 15 %, 0 %, 30 %.
    s = score([1.05, 1.15, 1.0, 0.7], [1.0, 1.0, 1.0, 1.0])
    assert s["within_10pct"] == 0.5 and s["mape_pct"] == pytest.approx(12.5) and s["max_err_pct"] == pytest.approx(30)
    rows = [{"measured_ms": m, "lut_sum_ms": p, "mflops": p * p} for p, m in zip(pred, meas)]
    res = summarize_rows(rows)
    assert res["lut"]["test"]["within_10pct"] == 1.0
    # Every subnet is held out exactly once across the folds, and the held-out score covers all of them.
    assert sorted(i for fold in res["folds"] for i in fold) == list(range(8))
    assert res["lut"]["test"]["n"] == 8 and res["flops"]["test"]["n"] == 8
    half = res["split_half"]
    assert sorted(half["fit_idx"] + half["test_idx"]) == list(range(8)) and not set(half["fit_idx"]) & set(half["test_idx"])


def test_cross_validation_predicts_each_subnet_without_it():
    from easrec.profiling.corrections import cross_validate_corrections
    from easrec.profiling.scores import folds

    # measured = 2 · sum, except subnet 3, measured 10x too slow: an affine fit that saw it would be pulled.
    sums = np.arange(1.0, 11.0)
    meas = 2.0 * sums
    meas[3] *= 10
    rows = [{"measured_ms": m, "lut_sum_ms": p} for p, m in zip(sums, meas)]
    fold_list = folds(len(rows), 5, seed=0)
    assert len(fold_list) == 5 and sorted(i for f in fold_list for i in f) == list(range(10))
    assert sorted(folds(3, 5)) == [[0], [1], [2]]  # never more folds than subnets
    cv = cross_validate_corrections(rows, fold_list)
    oof = np.array(cv["candidates"]["affine"]["out_of_fold_ms"])
    for fold in fold_list:
        rest = [i for i in range(10) if i not in fold]
        a, b = fit_affine(sums[rest], meas[rest])
        np.testing.assert_allclose(oof[fold], a * sums[fold] + b)
    # Held-out scores are out of fold: the fit on all subnets scores better in sample than out of fold.
    aff = cv["candidates"]["affine"]
    assert aff["test"]["n"] == 10 and aff["test"]["mape_pct"] > aff["fit"]["mape_pct"]
    # `none` never fits anything: its out-of-fold predictions are the sums themselves.
    np.testing.assert_allclose(cv["candidates"]["none"]["out_of_fold_ms"], sums)


# ------------------------------------------------------------------ real builds

MICRO = SearchSpace(max_lens=(10,), ds=(16,), heads=(1, 2), ffns=(32,), depths=(1, 2), attentions=("softmax",))


@pytest.mark.slow
@pytest.mark.parametrize("runtime,space", [("torch", TINY), ("executorch", MICRO)])
def test_real_build_and_validate(tmp_path, runtime, space):
    device = get_device("cpu", threads=1)
    out = tmp_path / f"lut_{runtime}.json"
    table = build_lut(device, space, runtime, "fp32", N_ITEMS, 1, out, settings=FAST, extra=[], chunk=64,
                      cache=tmp_path / "cache")
    assert not table.missing()
    assert all(e["median_ms"] >= 0 for e in table.entries.values())
    assert table.data["programs"]["overhead"]["median_ms"] > 0 and table.data["canary_ref_ms"] > 0
    assert table.data["timing"]["graphs_lowered"] == len(table.data["programs"]) + 1
    res = validate_lut(out, device, 6, settings=FAST, cache=tmp_path / "cache")
    assert res["n_subnets"] == 6 and all(r["measured_ms"] > 0 and r["raw_ms"] > 0 for r in res["subnets"])
    assert res["noise_floor"]["n"] == 6 and 0 <= res["noise_floor"]["within_10pct"] <= 1
    assert math.isfinite(res["lut"]["a"]) and res["lut"]["a"] > 0
    data = json.loads(out.read_text())
    assert data["validation"]["n_subnets"] == 6 and data["correction"]["kind"] == res["corrections"]["chosen"]
    loaded = LatencyTable.load(out, space=space)
    row = res["subnets"][0]
    assert loaded.cost(Arch.from_dict(row["arch"])) == pytest.approx(row["predicted_ms"])


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["softmax", "linear"])
def test_gated_subnet_lowers_to_executorch_with_parity(tmp_path, kind):
    """A gated subnet's TopKGraph lowers through the shipped steps (the dropout's identity copy next to
    the gates' cumsum used to end up alone in an XNNPACK delegate) and matches eager."""
    pytest.importorskip("executorch")
    from easrec.devices.runners import load_runner
    from easrec.export.lowering import lower

    torch.manual_seed(0)
    arch = Arch(20, 16, (LayerArch(1, 32), LayerArch(2, 32)), kind, True, 16)
    graph = TopKGraph(SASRec(arch, N_ITEMS).eval(), k=10).eval()
    ids = padded_ids(20, N_ITEMS)
    path = lower(graph, (ids,), tmp_path / "gated.pte", "executorch", "fp32")
    items, scores = load_runner(path, threads=1).run([ids.numpy()])
    with torch.no_grad():
        ref_items, ref_scores = graph(ids)
    np.testing.assert_allclose(scores, ref_scores.numpy(), rtol=1e-4, atol=1e-4)
    assert (items == ref_items.numpy()).mean() >= 0.9  # near-ties may swap


def test_cli_parses_both_forms():
    from easrec.cli import build_parser

    p = build_parser()
    a = p.parse_args(["profile", "--device", "cpu", "--runtime", "torch", "--out", "x.json", "--json"])
    assert a.action is None and a.out == "x.json" and a.runtime == "torch"
    b = p.parse_args(["profile", "validate", "x.json", "--subnets", "7"])
    assert b.action == "validate" and b.lut == "x.json" and b.subnets == 7


def test_round_canary_is_the_median_over_a_rounds_slots():
    from easrec.profiling.protocol import round_canary

    # Three slots, two rounds: one canary timing of round 0 was hit by load, the round's value ignores it.
    assert round_canary([[1.0, 2.0], [1.1, 2.1], [9.0, 2.2]]) == [1.1, 2.1]
    assert round_canary([]) == []


# --- the shape design: few whole programs, every entry from a model of its component's shape ---------

def _shape_truth(space, seed=3):
    """θ for every shape parameter of `space`: a device whose components cost exactly features · θ."""
    from easrec.profiling.shape_model import parameter_names

    rng = __import__("random").Random(seed)
    return {n: rng.uniform(0.002, 0.05) for n in parameter_names(space)}


class ShapeDevice(FakeDevice):
    """Latency = Σ over the program's components of features · θ (the shape model's own form)."""

    def __init__(self, theta):
        super().__init__()
        self.theta = theta

    def measure(self, artifact, inputs, **kw):
        from easrec.profiling.shape_model import program_features

        desc = json.loads(open(artifact).read())
        if "canary" in desc:
            return FakeStats(0.1)
        arch = None if "overhead" in desc else Arch.from_dict(desc["arch"])
        self.measured.append("overhead" if arch is None else program_id(arch))
        return FakeStats(sum(v * self.theta[n] for n, v in program_features(arch).items()))


def test_shape_design_measures_few_programs_and_predicts_every_architecture(tmp_path, fake_lowering):
    from easrec.profiling.shape_model import parameter_names, program_features

    theta = _shape_truth(SMALL)
    k = len(parameter_names(SMALL)) + 4
    dev = ShapeDevice(theta)
    table = build_lut(dev, SMALL, "torch", "fp32", N_ITEMS, 1, tmp_path / "lut.json", settings=FAKE, workers=0,
                      extra=[], chunk=8, cache=tmp_path / "cache", design_kind="shape", n_programs=k)
    entries_design = design_programs(SMALL, [])
    assert len(table.data["programs"]) == k < len(entries_design.programs)
    assert set(table.data["programs"]) <= {p for p, _ in entries_design.programs}
    assert table.data["design"]["kind"] == "shape" and set(table.data["solve"]["theta"]) == set(theta)
    assert set(table.entries) == {c.id() for c in space_components(SMALL)}
    rng = __import__("random").Random(11)
    for _ in range(30):
        arch = SMALL.sample(rng)
        truth = sum(v * theta[n] for n, v in program_features(arch).items())
        assert table.raw_cost(arch) == pytest.approx(truth, rel=1e-6)
    # A finished table is not measured again; a table keeps the design it was begun with.
    # "auto" (the default) resumes a table in the design it was begun with.
    calls = dev.calls
    build_lut(dev, SMALL, "torch", "fp32", N_ITEMS, 1, tmp_path / "lut.json", settings=FAKE, workers=0, extra=[],
              cache=tmp_path / "cache")
    assert dev.calls == calls
    with pytest.raises(EasrecError, match="'design.kind'"):
        build_lut(dev, SMALL, "torch", "fp32", N_ITEMS, 1, tmp_path / "lut.json", settings=FAKE, workers=0, extra=[],
                  cache=tmp_path / "cache", design_kind="entries")


def test_shape_design_chooses_a_full_rank_set_from_a_prior_only():
    from easrec.profiling.shape_model import feature_matrix, make_design, parameter_names, program_features, shape_design

    space = SearchSpace()
    names = parameter_names(space, [reference_arch()])
    design = shape_design(space, [reference_arch()], n_programs=40)
    X = feature_matrix([program_features(a) for _, a in design.programs], names)
    pool = design_programs(space, [reference_arch()])
    X_pool = feature_matrix([program_features(a) for _, a in pool.programs], names)
    # Once-per-program parts (embedding, scoring, last block) always come together: no program separates
    # their constants, and no model needs to. The chosen 40 resolve everything the 259 programs resolve.
    assert len(design.programs) == 40 and np.linalg.matrix_rank(X) == np.linalg.matrix_rank(X_pool) < len(names)
    # Asking for fewer programs than parameters still gets enough to fit every parameter.
    few = shape_design(space, [reference_arch()], n_programs=3)
    assert len(few.programs) == len(names)
    with pytest.raises(EasrecError, match="design"):
        make_design("cubic", space, [])
    # "auto" takes the shape design where it saves programs: the default space (259), not a small one (51).
    from easrec.profiling.shape_model import auto_design_kind

    assert auto_design_kind(space, [reference_arch()]) == "shape" and auto_design_kind(SMALL, []) == "entries"
