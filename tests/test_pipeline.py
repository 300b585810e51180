"""`easrec run` end to end on a tiny preset: every stage real (ONNX Runtime on this CPU), resumable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from easrec.cli import main
from easrec.devices import Device
from easrec.errors import EasrecError
from easrec.pipeline import PRESETS, STAGES, Pipeline, Preset, RunOptions
from easrec.space import SearchSpace

TINY = Preset(
    baseline={"max_len": 20, "d": 16, "layers": [{"heads": 1, "ffn": 32}] * 2, "attention": "softmax", "gates": False,
              "head_size": 16},
    # Gates off: on a loaded machine a gated one-block subnet can measure as dear as this two-block
    # baseline, and this test is about the stages, not the budget (gated export: tests/test_export.py).
    space=SearchSpace(max_lens=(10, 20), ds=(16,), heads=(1,), ffns=(32,), depths=(1, 2), attentions=("softmax",),
                      gates=False).to_dict(),
    epochs=2, patience=2, lr=3e-3, batch_size=128, targets="all", search_epochs=1, validate_subnets=4, profile_max_seconds=0.2,
    bench_runs=5, energy_runs=20, energy_seconds=0.5,
)


@pytest.fixture()
def tiny_preset(monkeypatch):
    monkeypatch.setitem(PRESETS, "tiny", TINY)
    return "tiny"


@pytest.mark.slow
def test_pipeline_runs_every_stage_and_resumes_after_a_failure(tmp_path, tiny_preset, monkeypatch, capsys):
    out = tmp_path / "run"
    opts = RunOptions(data="synthetic-small", runtime="onnxruntime", budget_ratio=1.0, preset=tiny_preset,
                      lut_cache=str(tmp_path / "luts"))
    pipe = Pipeline(out, opts)

    def lost_device(self):
        raise EasrecError("cpu: measuring baseline.onnx failed: device went away")

    monkeypatch.setattr(Pipeline, "stage_bench", lost_device)
    with pytest.raises(EasrecError, match="device went away"):
        pipe.run()
    state = json.loads((out / "pipeline.json").read_text())
    assert [s for s in STAGES if state["stages"].get(s, {}).get("status") == "done"] == ["data", "baseline", "profile", "search", "export"]
    assert state["stages"]["bench"]["status"] == "failed"
    model_mtime = (out / "baseline" / "model.pt").stat().st_mtime
    monkeypatch.undo()
    monkeypatch.setitem(PRESETS, "tiny", TINY)

    seen = []
    summary = Pipeline.resume(out, lambda stage, status: seen.append((stage, status))).run()
    assert ("baseline", "kept") in seen and ("bench", "done") in seen and ("report", "done") in seen
    assert (out / "baseline" / "model.pt").stat().st_mtime == model_mtime  # finished stages are not redone
    sub = summary["models"]["subnet"]
    assert sub["ms"] > 0 and sub["bytes_int8"] > 0 and sub["ndcg@10"] is not None
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["predicted_cost"] <= metrics["budget"]
    assert "measured_ms" not in metrics  # the bench stage writes bench.json only; the search's record stays its own
    assert summary["measured_ms"] == pytest.approx(sub["ms"])
    assert summary["measured_over_budget"] == pytest.approx(sub["ms"] / metrics["budget"])
    energy = json.loads((out / "energy.json").read_text())
    assert {e["model"] for e in energy} == {"baseline", "subnet"}
    html = (out / "report.html").read_text()
    assert "data:image/png;base64" in html
    # The artifacts answer under the protocol the models were selected with (synthetic data repeats items).
    assert metrics["keep_seen"] is True
    sidecars = [json.loads((out / "artifacts" / f"{n}.onnx.json").read_text()) for n in ("baseline", "subnet")]
    assert all(s["excludes_seen"] is False for s in sidecars)
    # The search section is fed by the run's own search log and candidates.
    md = (out / "report.md").read_text()
    assert "## Search" in md and f"{metrics['search_steps']} steps" in md and metrics["arch_description"] in md


def test_run_refuses_other_options_in_the_same_directory(tmp_path, tiny_preset):
    out = tmp_path / "run"
    out.mkdir()
    opts = RunOptions(data="synthetic-small", preset=tiny_preset)
    (out / "pipeline.json").write_text(json.dumps({"options": {**opts.__dict__, "budget_ratio": 0.3}, "stages": {}}))
    with pytest.raises(EasrecError, match="budget_ratio"):
        Pipeline.open(out, opts)


def test_run_cli_rejects_nonpositive_budget(tmp_path, capsys):
    assert main(["run", "synthetic-small", "--budget-ratio", "0", "--out", str(tmp_path / "r")]) == 2
    assert "--budget-ratio" in capsys.readouterr().err


# --- devices, the LUT cache and the budget ---------------------------------------------------------

class FakeDevice(Device):
    """A device that only has a fingerprint (nothing is measured in these tests)."""

    kind = "cpu"

    def __init__(self, **info):
        super().__init__("cpu")
        self.threads = 1
        self._info = {"kind": "cpu", "spec": "cpu", "cpu": "AMD EPYC 9004", "cores": 2, "threads": 1, "os": "Linux 6.1",
                      "machine": "x86_64", "python": "3.11", "hostname": "here", "pinned_cores": None, **info}

    def info(self):
        return dict(self._info)

    def push(self, artifact):
        raise AssertionError("nothing is pushed in these tests")

    def timed(self, artifact, inputs, threads, policy):
        raise AssertionError("nothing is measured in these tests")


def write_lut(path, device, runtime, threads, space, n_items, extra=(), correction=None, validated=True):
    """A complete LUT for `device` as build_lut would write it (entries: scaled FLOPs)."""
    from easrec.cost import space_components
    from easrec.cost.flops import FlopsCostModel
    from easrec.profiling.lut import device_fingerprint, new_data

    fp = device_fingerprint(device.info(), runtime, "fp32")
    fp["threads"] = threads
    data = new_data(fp, space, n_items, 1, {})
    flops = FlopsCostModel(space, n_items)
    for c in space_components(space, extra):
        ms = 0.01 + 1e-3 * flops.component_cost(c)
        data["entries"][c.id()] = {"median_ms": ms, "p10_ms": ms, "p90_ms": ms, "runs": 5}
    if correction:
        data["correction"] = correction
    data["validation"] = {"lut": {"test": {"within_10pct": 1.0}}} if validated else None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return data


@pytest.fixture()
def lut_pipe(tmp_path, tiny_preset, monkeypatch):
    """A tiny-preset pipeline on a FakeDevice, with build_lut/validate_lut recorded instead of measuring."""
    import easrec.profiling.lut as lut_mod
    import easrec.profiling.validate as validate_mod

    opts = RunOptions(data="synthetic-small", runtime="onnxruntime", preset=tiny_preset, lut_cache=str(tmp_path / "luts"))
    pipe = Pipeline(tmp_path / "run", opts)
    pipe.out.mkdir(parents=True)
    device = FakeDevice()
    monkeypatch.setattr(Pipeline, "device", lambda self: device)
    calls = []

    def fake_build(dev, space, runtime, dtype, n_items, threads, out, **kw):
        calls.append(("build", str(out)))
        write_lut(Path(out), dev, runtime, threads, space, n_items, kw.get("extra", ()), validated=False)

    def fake_validate(path, dev, n, **kw):
        calls.append(("validate", str(path)))
        data = json.loads(Path(path).read_text())
        data["validation"] = {"lut": {"test": {"within_10pct": 1.0}}}
        Path(path).write_text(json.dumps(data))

    monkeypatch.setattr(lut_mod, "build_lut", fake_build)
    monkeypatch.setattr(validate_mod, "validate_lut", fake_validate)
    return pipe, device, calls


def test_lut_cache_key_is_the_full_device_fingerprint(lut_pipe):
    pipe, device, _ = lut_pipe
    here, fp = pipe.lut_cache_path(device, 293)
    assert fp["cpu"] == "AMD EPYC 9004" and fp["threads"] == 1 and fp["runtime"] == "onnxruntime"
    for change in ({"cpu": "Intel Xeon 8480"}, {"cores": 64}, {"os": "Linux 5.4"}, {"machine": "aarch64"},
                   {"gpu": "NVIDIA H100"}, {"pinned_cores": [0]}):
        other, _ = pipe.lut_cache_path(FakeDevice(**change), 293)
        assert other != here, change
    assert pipe.lut_cache_path(FakeDevice(hostname="elsewhere", python="3.12"), 293)[0] == here  # not part of the identity
    assert pipe.lut_cache_path(device, 294)[0] != here
    pipe.opts.threads = 2
    assert pipe.lut_cache_path(device, 293)[0] != here


def test_a_cached_lut_from_another_cpu_is_not_reused(lut_pipe, caplog):
    pipe, device, calls = lut_pipe
    n_items = pipe.data().n_items
    cache, _ = pipe.lut_cache_path(device, n_items)
    # A table from another machine under this device's key (a copied cache folder): complete and validated.
    write_lut(cache, FakeDevice(cpu="Intel Xeon 8480"), "onnxruntime", 1, pipe.space, n_items, [pipe.baseline_arch])
    with caplog.at_level("WARNING", logger="easrec.pipeline"):
        result = pipe.stage_profile()
    assert result["reused"] is False
    assert calls == [("build", str(cache)), ("validate", str(cache))]
    assert "'device.cpu'" in caplog.text and "Intel Xeon 8480" in caplog.text
    assert json.loads((pipe.out / "lut.json").read_text())["device"]["cpu"] == "AMD EPYC 9004"
    kept = [p for p in cache.parent.iterdir() if ".mismatch-" in p.name]
    assert len(kept) == 1 and json.loads(kept[0].read_text())["device"]["cpu"] == "Intel Xeon 8480"

    calls.clear()
    assert pipe.stage_profile()["reused"] is True  # the table measured here is reused
    assert calls == []


def test_a_cached_lut_for_other_threads_or_runtime_version_is_not_reused(lut_pipe):
    pipe, device, calls = lut_pipe
    n_items = pipe.data().n_items
    cache, _ = pipe.lut_cache_path(device, n_items)
    data = write_lut(cache, device, "onnxruntime", 2, pipe.space, n_items, [pipe.baseline_arch])
    assert pipe.stage_profile()["reused"] is False and calls[0] == ("build", str(cache))
    calls.clear()
    data["device"]["runtime_version"] = "0.0.1"
    data["device"]["threads"] = 1
    cache.write_text(json.dumps(data))
    assert pipe.stage_profile()["reused"] is False and calls[0] == ("build", str(cache))


def test_budget_reference_is_the_baseline_costed_by_the_corrected_table(lut_pipe, monkeypatch):
    import easrec.search.run as search_mod
    from easrec.profiling.lut import LatencyTable

    pipe, device, _ = lut_pipe
    pipe.opts.budget_ratio = 0.5
    n_items = pipe.data().n_items
    write_lut(pipe.out / "lut.json", device, "onnxruntime", 1, pipe.space, n_items, [pipe.baseline_arch],
              correction={"a": 1.3, "b": 0.25})
    table = LatencyTable.load(pipe.out / "lut.json", space=pipe.space)
    seen = {}

    def fake_search_run(dataset, data_cfg, out, *, cost_model, budget, reference=None, **kw):
        seen.update(budget=budget, cost_model=cost_model, reference=reference)
        return {"arch_description": "x", "predicted_cost": budget, "test": {}}

    monkeypatch.setattr(search_mod, "search_run", fake_search_run)
    result = pipe.stage_search()
    assert seen["budget"] == pytest.approx(0.5 * table.cost(pipe.baseline_arch))
    assert seen["budget"] != pytest.approx(0.5 * table.raw_cost(pipe.baseline_arch))  # the correction is applied
    assert seen["reference"] == pipe.baseline_arch and seen["cost_model"].correction == (1.3, 0.25)
    assert result["baseline_predicted_ms"] == pytest.approx(table.cost(pipe.baseline_arch))


def test_bench_reports_the_measured_latency_beside_the_budget(lut_pipe, monkeypatch):
    import easrec.export.bench as bench_mod

    pipe, _, _ = lut_pipe
    (pipe.out / "metrics.json").write_text(json.dumps({"budget": 2.0, "unit": "ms", "predicted_cost": 1.9,
                                                       "arch": pipe.baseline_arch.to_dict()}))
    monkeypatch.setattr(bench_mod, "bench_artifact",
                        lambda path, device, **kw: {"median_ms": 3.0 if "baseline" in Path(path).name else 2.1})
    before = (pipe.out / "metrics.json").read_bytes()
    result = pipe.stage_bench()
    assert (pipe.out / "metrics.json").read_bytes() == before  # another stage's record is never edited
    assert result["measured_over_budget"] == pytest.approx(1.05) and result["speedup"] == pytest.approx(3.0 / 2.1)
    summary = pipe.summary()
    assert summary["measured_ms"] == 2.1 and summary["budget_ms"] == 2.0 and summary["measured_over_budget"] == pytest.approx(1.05)
    # No reference cost in this record: the ratio view says nothing rather than guess.
    assert summary["measured_ratio"] == pytest.approx(0.7) and summary["measured_ratio_over_budget_ratio"] is None


def test_run_options_carry_the_device_options(tmp_path, tiny_preset):
    assert RunOptions(device="cpu:2").threads == 2
    with pytest.raises(EasrecError, match="cpu:2"):
        RunOptions(device="cpu:2", threads=3)
    opts = RunOptions(device="android:R58", threads=4, device_options={"runner": "/x/executor_runner"}, preset=tiny_preset)
    pipe = Pipeline(tmp_path / "r", opts)
    dev = pipe.device()
    assert dev.kind == "android" and str(dev.runner) == "/x/executor_runner" and dev.threads == 4
    assert "--device android:R58 --runner /x/executor_runner" in pipe.commands()[0]
    pipe = Pipeline(tmp_path / "r", RunOptions(device="cpu", device_options={"cores": [0]}, preset=tiny_preset))
    assert pipe.device().cores == [0] and "--cores 0" in pipe.commands()[0]


def test_a_run_started_before_device_options_existed_still_resumes(tmp_path, tiny_preset):
    out = tmp_path / "run"
    out.mkdir()
    opts = RunOptions(data="synthetic-small", preset=tiny_preset)
    old = {k: v for k, v in opts.__dict__.items() if k != "device_options"}
    (out / "pipeline.json").write_text(json.dumps({"options": old, "stages": {}}))
    assert Pipeline.open(out, opts).opts.device_options == {}


def test_run_cli_refuses_device_options_with_resume(tmp_path, capsys):
    assert main(["run", "--resume", str(tmp_path / "r"), "--runner", "/x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("easrec: error: --runner") and len(err.splitlines()) == 1
