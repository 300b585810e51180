"""Typed run records: round trips, errors naming file and field, files written before records had a version."""

from __future__ import annotations

import json

import pytest

from easrec.errors import EasrecError
from easrec.records import (
    RECORD_VERSION, ArtifactRecord, BenchRecord, CommandsRecord, DataRecord, EnergyRecord, SearchRecord, TrainRecord,
    records_from,
)
from easrec.rundir import RunDir

ARCH = {"max_len": 50, "d": 32, "layers": [{"heads": 2, "ffn": 64}], "attention": "softmax", "gates": False,
        "head_size": 16}
TRAIN = {"valid": {"ndcg@10": 0.17}, "test": {"hr@10": 0.3, "ndcg@10": 0.168}, "protocol": "full", "keep_seen": True,
         "params": 40_000, "arch": ARCH, "train_seconds": 12.5, "best_epoch": 3, "history": [{"epoch": 1}]}
SEARCH = {**TRAIN, "budget": 1.0, "unit": "ms", "predicted_cost": 0.95, "reference_cost": 2.0, "budget_used": 0.95,
          "arch_description": "L50 d32 [h2/f64]", "search_steps": 40, "alpha_entropy_at_end": 0.1,
          "candidates": [{"arch": "L50 d32 [h2/f64]", "why": "most probable within budget", "cost": 0.95,
                          "log_p": -1.2, "chosen": True}]}
ARTIFACT = {"model": "subnet", "path": "/r/artifacts/subnet.pte", "format": "executorch", "quantize": "none",
            "size_bytes": 180_000, "parity": {"passed": True, "artifact_metrics": {"ndcg@10": 0.168}}}
BENCH = {"model": "subnet", "quantize": "none", "artifact": "/r/artifacts/subnet.pte", "device": "cpu", "threads": 1,
         "runs": 100, "median_ms": 1.0, "p10_ms": 0.9, "p90_ms": 1.1, "sidecar": True, "load_ms": 3.0}
ENERGY = {"artifact": "/r/artifacts/subnet.pte", "device": "cpu", "runs": 500, "threads": 1, "source": "estimated",
          "joules_per_inference": 0.0009, "mj_per_inference": 0.9, "co2e_kg_per_inference": None,
          "country_iso_code": None, "tool": "codecarbon", "parts": {"cpu": {"joules_per_inference": 0.0009}},
          "warnings": [], "extra": {}, "format": "easrec-energy/1"}
DATA = {"name": "synthetic", "source": "synthetic", "users": 1000, "items": 500, "interactions": 50_000,
        "density": 0.1, "eval_users": 1000, "seq_len": {"min": 5, "max": 200}}


@pytest.mark.parametrize("cls, data", [
    (TrainRecord, TRAIN), (SearchRecord, SEARCH), (ArtifactRecord, ARTIFACT), (BenchRecord, BENCH),
    (EnergyRecord, {**ENERGY, "model": "subnet", "quantize": "none"}), (DataRecord, DATA),
    (CommandsRecord, {"commands": ["easrec run synthetic"], "versions": {"torch": "2.13.0"}}),
])
def test_records_round_trip_keeping_unknown_keys_and_nulls(cls, data):
    record = cls.from_dict(data, "x.json")
    assert record.version == 1
    assert record.to_dict() == {**data, "version": 1}
    assert cls.from_dict(record.to_dict(), "x.json") == record


def test_records_built_by_a_stage_write_only_what_is_set():
    row = BenchRecord(model="baseline", quantize="int8", median_ms=2.0)
    assert row.to_dict() == {"model": "baseline", "quantize": "int8", "median_ms": 2.0, "version": RECORD_VERSION}
    assert CommandsRecord.from_dict(["easrec train x"], "commands.json").commands == ["easrec train x"]


@pytest.mark.parametrize("cls, data, field", [
    (BenchRecord, {**BENCH, "median_ms": "fast"}, "median_ms"),
    (BenchRecord, {k: v for k, v in BENCH.items() if k != "model"}, "model"),
    (BenchRecord, {**BENCH, "model": "teacher"}, "model"),
    (BenchRecord, {**BENCH, "runs": True}, "runs"),  # a bool is not a count
    (ArtifactRecord, {**ARTIFACT, "size_bytes": 1.5}, "size_bytes"),
    (ArtifactRecord, {**ARTIFACT, "path": None}, "path"),
    (TrainRecord, {**TRAIN, "test": [0.3]}, "test"),
    (SearchRecord, {**SEARCH, "budget": "1 ms"}, "budget"),
    (SearchRecord, {**SEARCH, "candidates": [{"cost": 1.0}]}, "candidates"),
    (SearchRecord, {**SEARCH, "finalists": [{"why": "alpha"}]}, "finalists"),
    (EnergyRecord, {**ENERGY, "parts": {"cpu": 0.9}}, "parts"),
    (EnergyRecord, {**ENERGY, "version": RECORD_VERSION + 1}, "version"),
    (DataRecord, {**DATA, "version": "1"}, "version"),
])
def test_bad_field_is_an_error_naming_file_and_field(cls, data, field):
    with pytest.raises(EasrecError) as exc:
        cls.from_dict(data, "RUN/some.json")
    assert exc.value.field == field
    assert "RUN/some.json" in str(exc.value) and f"'{field}'" in str(exc.value)


def test_a_list_file_names_the_bad_row():
    with pytest.raises(EasrecError, match=r"bench.json\[1\]: field 'median_ms'"):
        records_from([BENCH, {**BENCH, "median_ms": None}], BenchRecord, "bench.json")
    with pytest.raises(EasrecError, match="bench.json: expected a list"):
        records_from("rows", BenchRecord, "bench.json")


def _write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def test_version_1_files_read_through_rundir(tmp_path):
    """A run written before records had a version: every accessor reads it as version 1."""
    _write(tmp_path / "metrics.json", {**SEARCH, "measured_ms": 7.0, "measured_over_budget": 7.0})
    _write(tmp_path / "baseline" / "metrics.json", {**TRAIN, "params": 120_000})
    _write(tmp_path / "artifacts.json", [ARTIFACT, {**ARTIFACT, "quantize": "int8", "size_bytes": 60_000}])
    _write(tmp_path / "bench.json", [BENCH])
    _write(tmp_path / "energy.json", ENERGY)  # `easrec energy --out` writes one object, without a model
    _write(tmp_path / "data_stats.json", DATA)
    _write(tmp_path / "commands.json", {"commands": ["easrec run synthetic"]})
    run = RunDir(tmp_path)
    assert run.train().params == 40_000 and run.baseline().train().params == 120_000
    assert run.search().budget == 1.0 and run.search().candidates[0]["chosen"]
    assert [a.quantize for a in run.artifacts()] == ["none", "int8"]
    assert run.artifacts()[0].artifact_ndcg == 0.168
    assert run.bench()[0].median_ms == 1.0 and run.bench()[0].extra == {"sidecar": True, "load_ms": 3.0}
    energy = run.energy()
    assert len(energy) == 1 and energy[0].model is None and energy[0].mj == 0.9
    assert run.data().items == 500 and run.commands().commands == ["easrec run synthetic"]
    for rec in (run.train(), run.search(), run.data(), run.commands(), *run.artifacts(), *run.bench(), *energy):
        assert rec.version == 1
    summary = run.summary({"data": 1.0})
    assert summary["budget_ms"] == 1.0 and summary["predicted_ms"] == 0.95 and summary["measured_ms"] == 1.0
    assert summary["models"]["subnet"]["ms"] == 1.0 and summary["models"]["subnet"]["bytes_int8"] == 60_000
    assert summary["models"]["baseline"]["params"] == 120_000


def test_rundir_without_files_and_a_training_run(tmp_path):
    run = RunDir(tmp_path)
    assert run.train() is None and run.search() is None and run.bench() == [] and run.energy() == []
    _write(tmp_path / "metrics.json", TRAIN)
    assert run.search() is None  # a training run has no search fields
    assert run.summary({})["budget_ms"] is None and run.summary({})["models"]["baseline"]["arch"] is None


def test_write_records_then_read(tmp_path):
    run = RunDir(tmp_path)
    run.write_records("bench.json", [BenchRecord.from_dict(BENCH, "bench.json")])
    on_disk = json.loads((tmp_path / "bench.json").read_text())
    assert on_disk == [{**BENCH, "version": RECORD_VERSION}]
    assert run.bench() == [BenchRecord.from_dict(BENCH, "bench.json")]
    _write(tmp_path / "bench.json", [{**BENCH, "p10_ms": "x"}])
    with pytest.raises(EasrecError, match=r"bench.json\[0\]: field 'p10_ms'"):
        run.bench()


def test_measured_latency_from_bench_rows_and_from_a_run_benched_before_bench_json(tmp_path):
    """bench.json is the source of measured latency; an older run that kept it in metrics.json still reads."""
    _write(tmp_path / "metrics.json", {**SEARCH, "measured_ms": 1.9})
    run = RunDir(tmp_path)
    assert run.budget_check() == {"predicted_ms": 0.95, "budget_ms": 1.0, "measured_ms": 1.9, "measured_over_budget": 1.9,
                                  "budget_ratio": 0.5, "measured_ratio": None, "measured_ratio_over_budget_ratio": None}
    _write(tmp_path / "bench.json", [BENCH, {**BENCH, "quantize": "int8", "median_ms": 0.5}, {**BENCH, "model": "baseline", "median_ms": 3.0}])
    assert run.measured_ms("subnet") == 1.0 and run.measured_ms("baseline") == 3.0
    check = run.budget_check()
    assert check["measured_over_budget"] == 1.0
    # Relative to the baseline measured in the same run: 1.0 / 3.0 against the budget's 1.0 / 2.0.
    assert check["measured_ratio"] == pytest.approx(1 / 3) and check["measured_ratio_over_budget_ratio"] == pytest.approx(2 / 3)
    _write(tmp_path / "metrics.json", {**SEARCH, "unit": "MFLOPs"})
    assert run.budget_check()["budget_ms"] is None and run.budget_check()["measured_over_budget"] is None


def test_write_metrics_checks_the_record_before_writing(tmp_path):
    run = RunDir(tmp_path)
    run.write_metrics(SEARCH)
    assert run.search().budget == 1.0
    with pytest.raises(EasrecError, match=r"metrics.json: field 'params' must be an integer"):
        run.write_metrics({**TRAIN, "params": "many"})
    with pytest.raises(EasrecError, match=r"field 'candidates' row 0"):
        run.write_metrics({**SEARCH, "candidates": [{"why": "no arch"}]})
    assert run.search().budget == 1.0  # a refused record leaves the file as it was
