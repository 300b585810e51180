"""`easrec run` end to end on a tiny preset: every stage real (ONNX Runtime on this CPU), resumable."""

from __future__ import annotations

import json

import pytest

from easrec.cli import main
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
    epochs=2, patience=2, lr=3e-3, search_epochs=1, validate_subnets=4, profile_max_seconds=0.2,
    bench_runs=5, energy_runs=20, energy_seconds=0.5,
)


@pytest.fixture()
def tiny_preset(monkeypatch):
    monkeypatch.setitem(PRESETS, "tiny", TINY)
    return "tiny"


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
    assert metrics["measured_ms"] == pytest.approx(sub["ms"])
    energy = json.loads((out / "energy.json").read_text())
    assert {e["model"] for e in energy} == {"baseline", "subnet"}
    html = (out / "report.html").read_text()
    assert "data:image/png;base64" in html


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
