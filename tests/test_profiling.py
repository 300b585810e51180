"""Latency lookup tables: components are the real blocks, the file round-trips, resumes, refuses bad
input naming the field, validation metrics are right, and real torch / executorch builds work."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from easrec.cost import Component, components, space_components
from easrec.devices import get_device
from easrec.errors import EasrecError
from easrec.export.graph import TopKGraph
from easrec.model.sasrec import SASRec
from easrec.profiling.components import (
    AttentionPart, EmbeddingPart, FeedForwardPart, component_module, padded_ids, running_mean,
)
from easrec.profiling.lut import LatencyTable, build_lut
from easrec.profiling.protocol import Settings
from easrec.profiling.validate import evaluate, fit_affine, kendall_tau, score, summarize_rows, validate_lut
from easrec.space import Arch, LayerArch, SearchSpace

TINY = SearchSpace(max_lens=(10, 20), ds=(16, 32), heads=(1, 2), ffns=(32, 64), depths=(1, 2))
FAST = Settings(warmup=2, min_runs=5, max_runs=20, max_seconds=0.2)
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
        x = AttentionPart(model, 1, arch, last=True)(x, mask, keep)
        ffn1 = FeedForwardPart(model, 1, arch, last=True, gated=gates)
        h = ffn1(x, keep, running_mean(x0, keep)[:, -1:]) if gates else ffn1(x, keep)
        assert torch.equal(h, ref_h)
        # The full-sequence path's first block equals the real model's first block too.
        assert ref_full.shape == (1, 20, 32)
        scorer, (hh, ids2) = component_module(Component.make("scoring", d=32), N_ITEMS, model=model)
        idx, val = scorer(ref_h, ids)
        ref_idx, ref_val = TopKGraph(model)(ids)
        assert torch.equal(idx, ref_idx) and torch.equal(val, ref_val)


def test_every_component_of_the_space_builds_and_runs():
    for c in space_components(TINY):
        module, inputs = component_module(c, N_ITEMS, TINY.head_size)
        with torch.no_grad():
            out = module(*inputs)
        assert out is not None
        if c.name == "embedding":
            assert inputs[0].dtype == torch.int64 and (inputs[0][0, 0] == 0)  # left padding


# ------------------------------------------------------------------ a fake device for fast file tests

class FakeStats:
    def __init__(self, ms):
        self.median_ms, self.p10_ms, self.p90_ms, self.runs = ms, 0.9 * ms, 1.2 * ms, 7
        self.load_ms, self.first_ms = 1.0, 2 * ms


class FakeDevice:
    """Latency = a deterministic function of the artifact's size (no runtime needed)."""

    def __init__(self, cpu="Fake CPU"):
        self.cpu = cpu
        self.calls = 0

    def info(self):
        return {"kind": "cpu", "spec": "cpu", "cpu": self.cpu, "cores": 2, "threads": 1, "os": "Linux", "machine": "x86_64"}

    def measure(self, artifact, inputs, **kw):
        self.calls += 1
        return FakeStats(0.05 + artifact.stat().st_size / 1e6)


def _build(tmp_path, device=None, progress=None, space=TINY):
    return build_lut(device or FakeDevice(), space, "torch", "fp32", N_ITEMS, 1, tmp_path / "lut.json",
                     progress=progress, settings=FAST, workers=0, extra=[], chunk=4)


def test_lut_round_trip_and_cost(tmp_path):
    table = _build(tmp_path)
    again = LatencyTable.load(tmp_path / "lut.json", space=TINY)
    arch = TINY.sample(__import__("random").Random(3))
    assert again.cost(arch) == pytest.approx(table.cost(arch))
    assert again.cost(arch) == pytest.approx(sum(again.component_cost(c) for c in components(arch)))
    assert again.unit == "ms"
    assert set(again.entries) == {c.id() for c in space_components(TINY)}
    e = again.entries["overhead"]
    assert e["p10_ms"] <= e["median_ms"] <= e["p90_ms"] and e["runs"] == 7
    # The gates entry is the gated FFN minus the plain FFN.
    g = again.entries["gates/L=10/d=16/ffn=32"]
    assert g["minus"] == "ffn/L=10/d=16/ffn=32"
    # Affine correction applies to cost() and expected_cost(), not per component.
    again.data["correction"] = {"a": 2.0, "b": 1.0}
    assert again.cost(arch) == pytest.approx(2 * again.raw_cost(arch) + 1)
    data = json.loads((tmp_path / "lut.json").read_text())
    assert data["device"]["runtime"] == "torch" and data["device"]["dtype"] == "fp32"
    assert data["space_hash"] == TINY.hash() and data["n_items"] == N_ITEMS and data["batch"] == 1
    assert len(data["canary"]) == 1 and "drift" in data["canary"][0]


def test_resume_after_interruption(tmp_path):
    class Stop(Exception):
        pass

    def interrupt(done, total, what):
        if done == 9:
            raise Stop

    dev = FakeDevice()
    with pytest.raises(Stop):
        _build(tmp_path, dev, interrupt)
    kept = json.loads((tmp_path / "lut.json").read_text())["entries"]
    assert len(kept) >= 8  # written every chunk of 4 and on the way out
    first_calls = dev.calls
    dev2 = FakeDevice()
    table = _build(tmp_path, dev2)
    total = len(space_components(TINY))
    # Only the missing entries (+ the two canary runs) were measured again; kept ones unchanged.
    assert dev2.calls == total - len(kept) + 2
    for cid, entry in kept.items():
        assert table.entries[cid]["raw_median_ms"] == entry["raw_median_ms"]
    assert len(table.data["canary"]) == 1 and first_calls > 0
    # A complete table is not re-measured at all.
    dev3 = FakeDevice()
    _build(tmp_path, dev3)
    assert dev3.calls == 0


def test_refusals_name_the_field(tmp_path):
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

    def edited(mutate, pattern):
        data = json.loads(path.read_text())
        mutate(data)
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps(data))
        with pytest.raises(EasrecError, match=pattern):
            LatencyTable.load(bad)

    cid = "overhead"
    edited(lambda d: d["entries"][cid].pop("median_ms"), r"entries\['overhead'\]\.median_ms' is missing")
    edited(lambda d: d["entries"][cid].update(p10_ms=d["entries"][cid]["median_ms"] + 1), r"entries\['overhead'\]' is inconsistent")
    edited(lambda d: d["entries"][cid].update(median_ms=-1.0), r"entries\['overhead'\]\.median_ms' must be a non-negative")
    edited(lambda d: d["entries"].pop("scoring/d=16"), r"field 'entries' does not cover .*scoring/d=16")
    edited(lambda d: d.update(space_hash="abc"), r"field 'space_hash'")
    edited(lambda d: d.update(correction={"a": -1, "b": 0}), r"field 'correction'")
    edited(lambda d: d.pop("n_items"), r"missing field 'n_items'")


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
    assert sorted(res["fit_idx"] + res["test_idx"]) == list(range(8)) and not set(res["fit_idx"]) & set(res["test_idx"])


# ------------------------------------------------------------------ real builds

MICRO = SearchSpace(max_lens=(10,), ds=(16,), heads=(1, 2), ffns=(32,), depths=(1, 2), attentions=("softmax",))


@pytest.mark.slow
@pytest.mark.parametrize("runtime,space", [("torch", TINY), ("executorch", MICRO)])
def test_real_build_and_validate(tmp_path, runtime, space):
    device = get_device("cpu", threads=1)
    out = tmp_path / f"lut_{runtime}.json"
    table = build_lut(device, space, runtime, "fp32", N_ITEMS, 1, out, settings=FAST, extra=[], chunk=64)
    assert not table.missing()
    assert all(e["median_ms"] >= 0 for e in table.entries.values())
    assert table.entries["overhead"]["raw_median_ms"] > 0
    res = validate_lut(out, device, 6, settings=FAST)
    assert res["n_subnets"] == 6 and all(r["measured_ms"] > 0 for r in res["subnets"])
    assert math.isfinite(res["lut"]["a"]) and res["lut"]["a"] > 0
    data = json.loads(out.read_text())
    assert data["validation"]["n_subnets"] == 6 and data["correction"]["a"] == pytest.approx(res["lut"]["a"])
    loaded = LatencyTable.load(out, space=space)
    arch = res["subnets"][0]["arch"]
    a, b = loaded.correction
    assert loaded.cost(Arch.from_dict(arch)) == pytest.approx(a * res["subnets"][0]["lut_sum_ms"] + b)


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
