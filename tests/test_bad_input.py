"""Bad input, hostile files and faults, command by command.

A table of cases (command line, files to create first) → exit code, a fragment of the one-line
error and the field a `--json` caller is told about. Each case runs twice: for a person (one line
on stderr, nothing on stdout) and with `--json` (the same line on stderr, one JSON object
`{"error", "field"}` on stdout). Then the faults: read-only output folders (chmod, and a read-only
tmpfs), a full and a too-small tmpfs, a run directory locked by another writer or left locked by a
dead one, a finished run that must not be overwritten.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from easrec.cli import main

TINY = ["--max-len", "20", "--d", "16", "--layers", "1", "--heads", "1", "--ffn", "32", "--epochs", "1",
        "--batch-size", "64", "--lr", "5e-3", "--threads", "1", "--seed", "0"]
MARKER = "pwned"  # the file a crafted pickle tries to create in the case's folder


# --- files the cases need -------------------------------------------------------------------------

class _RunsCode:
    """Unpickling this calls os.system: what a crafted model.pt or checkpoint.pt would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def crafted_torch_file(path: Path, tmp: Path) -> None:
    """A torch.save zip whose pickle runs a shell command when loaded with weights_only=False."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": "easrec-model", "arch": {}, "n_items": 3, "state_dict": {}, "x": _RunsCode(tmp / MARKER)}, path)


def crafted_raw_pickle(path: Path, tmp: Path) -> None:
    """A bare pickle (torch's legacy format) with the same payload."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps({"format": "easrec-model", "x": _RunsCode(tmp / MARKER)}))


def tiny_model_file(path: Path, truncate: bool = False) -> None:
    """A real (untrained) model.pt, whole or cut in half."""
    from easrec.model import SASRec
    from easrec.train import save_model
    from easrec.train.run import sasrec_arch

    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(SASRec(sasrec_arch(max_len=5, d=8, layers=1, heads=1, ffn=8), 10), path)
    if truncate:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def artifact_with_sidecar(tmp: Path, **edits) -> None:
    """tmp/m.onnx (any bytes: the sidecar is checked before a runtime opens it) and a consistent m.onnx.json, then `edits`."""
    import hashlib

    art = tmp / "m.onnx"
    art.write_bytes(b"not really onnx")
    items = ["<pad>"] + [f"i{i}" for i in range(1, 21)]
    meta = {"format": "easrec-artifact", "format_version": 1, "artifact": "m.onnx",
            "sha256": hashlib.sha256(art.read_bytes()).hexdigest(), "runtime": "onnxruntime", "n_items": 20,
            "max_len": 5, "k": 10, "batch": 1, "arch": {"max_len": 5},
            "input": {"name": "ids", "dtype": "int64", "shape": [1, 5]},
            "outputs": [{"name": "items", "dtype": "int64", "shape": [1, 10]}, {"name": "scores", "dtype": "float32", "shape": [1, 10]}],
            "mapping": {"items": items}, "popular": list(range(1, 11))}
    for key, value in edits.items():
        if value is DELETE:
            del meta[key]
        else:
            meta[key] = value
    (tmp / "m.onnx.json").write_text(json.dumps(meta))


DELETE = object()


def space_file(tmp: Path, **changes) -> None:
    from easrec.space import SearchSpace

    (tmp / "space.json").write_text(json.dumps({**SearchSpace().to_dict(), **changes}))


def fake_lut(tmp: Path, **device_fields) -> None:
    """tmp/lut.json: a complete table for this machine's cpu (entries from FLOPs), device fields overridden."""
    from easrec.cost import space_components
    from easrec.cost.flops import FlopsCostModel
    from easrec.devices import get_device
    from easrec.profiling.lut import device_fingerprint, new_data
    from easrec.space import SearchSpace

    space = SearchSpace(max_lens=(20,), ds=(16,), heads=(1,), ffns=(32,), depths=(1,), attentions=("softmax",))
    fp = device_fingerprint(get_device("cpu", threads=1).info(), "onnxruntime", "fp32")
    fp.update(threads=1, **device_fields)
    data = new_data(fp, space, 293, 1, {})
    flops = FlopsCostModel(space, 293)
    for c in space_components(space, ()):
        ms = 0.01 + 1e-3 * flops.component_cost(c)
        data["entries"][c.id()] = {"median_ms": ms, "p10_ms": ms, "p90_ms": ms, "runs": 5}
    (tmp / "lut.json").write_text(json.dumps(data))


def lock_file(tmp: Path, run: str, pid: int) -> None:
    """tmp/RUN/.easrec.lock held by `pid` on this host."""
    (tmp / run).mkdir(parents=True, exist_ok=True)
    (tmp / run / ".easrec.lock").write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "command": "easrec train",
                                                         "started": "2025-01-01 00:00:00 UTC", "token": "x"}))


def finished_run(tmp: Path, run: str) -> None:
    (tmp / run).mkdir(parents=True, exist_ok=True)
    (tmp / run / "metrics.json").write_text('{"test": {"ndcg@10": 0.227}}\n')


# --- the matrix -----------------------------------------------------------------------------------

@dataclass
class Case:
    """A command line ({tmp} = the case's folder) after `setup`, and what must come of it."""

    id: str
    argv: list[str]
    needles: tuple[str, ...]
    field: str | None = None
    setup: Callable[[Path], None] | None = None
    check: Callable[[Path], None] | None = None  # after the command: nothing run, nothing lost
    code: int = 2


def no_marker(tmp: Path) -> None:
    assert not (tmp / MARKER).exists(), "the crafted pickle ran code"


def unchanged_metrics(run: str) -> Callable[[Path], None]:
    def check(tmp: Path) -> None:
        assert json.loads((tmp / run / "metrics.json").read_text()) == {"test": {"ndcg@10": 0.227}}
    return check


def lock_kept(run: str) -> Callable[[Path], None]:
    def check(tmp: Path) -> None:
        assert json.loads((tmp / run / ".easrec.lock").read_text())["pid"] == os.getpid()
    return check


def absent(name: str) -> Callable[[Path], None]:
    def check(tmp: Path) -> None:
        assert not (tmp / name).exists(), name
    return check


CASES = [
    # 1. untrusted files: pickles are never executed, sidecars are checked field by field
    Case("evaluate-crafted-model", ["evaluate", "{tmp}/run"], ("model.pt", "refused", "weights-only"),
         setup=lambda t: crafted_torch_file(t / "run" / "model.pt", t), check=no_marker),
    Case("evaluate-crafted-raw-pickle", ["evaluate", "{tmp}/run"], ("model.pt", "refused"),
         setup=lambda t: crafted_raw_pickle(t / "run" / "model.pt", t), check=no_marker),
    Case("export-crafted-model", ["export", "{tmp}/run", "--format", "onnx", "--out", "{tmp}/m.onnx"], ("model.pt", "refused"),
         setup=lambda t: crafted_torch_file(t / "run" / "model.pt", t), check=no_marker),
    Case("train-resume-crafted-checkpoint", ["train", "synthetic-small", *TINY, "--resume", "--out", "{tmp}/run"],
         ("checkpoint.pt", "refused"), setup=lambda t: crafted_torch_file(t / "run" / "checkpoint.pt", t), check=no_marker),
    Case("evaluate-empty-model", ["evaluate", "{tmp}/run"], ("model.pt", "corrupt"),
         setup=lambda t: (t / "run").mkdir() or (t / "run" / "model.pt").write_bytes(b"")),
    Case("evaluate-corrupt-model", ["evaluate", "{tmp}/run"], ("model.pt", "corrupt"),
         setup=lambda t: tiny_model_file(t / "run" / "model.pt", truncate=True)),
    Case("sidecar-k-string", ["predict", "{tmp}/m.onnx", "--history", "i1"], ("m.onnx.json", "field 'k'"), field="k",
         setup=lambda t: artifact_with_sidecar(t, k="10")),
    Case("sidecar-k-zero", ["predict", "{tmp}/m.onnx", "--history", "i1"], ("field 'k'",), field="k",
         setup=lambda t: artifact_with_sidecar(t, k=0)),
    Case("sidecar-k-not-the-graph's", ["predict", "{tmp}/m.onnx", "--history", "i1"], ("field 'outputs[0].shape'",),
         field="outputs[0].shape", setup=lambda t: artifact_with_sidecar(t, k=12)),
    Case("sidecar-max-len-edited", ["predict", "{tmp}/m.onnx", "--history", "i1"], ("field 'input.shape'",),
         field="input.shape", setup=lambda t: artifact_with_sidecar(t, max_len=50)),
    Case("sidecar-popular-out-of-range", ["predict", "{tmp}/m.onnx", "--history", ""], ("field 'popular'", "1..20"),
         field="popular", setup=lambda t: artifact_with_sidecar(t, popular=[1, 999])),
    Case("sidecar-mapping-repeats-an-id", ["predict", "{tmp}/m.onnx", "--history", "i1"], ("field 'mapping.items'", "i3"),
         field="mapping.items",
         setup=lambda t: artifact_with_sidecar(t, mapping={"items": ["<pad>"] + [f"i{i}" for i in range(1, 20)] + ["i3"]})),
    Case("sidecar-mapping-not-a-list", ["predict", "{tmp}/m.onnx", "--history", "i1"], ("field 'mapping.items'",),
         field="mapping.items", setup=lambda t: artifact_with_sidecar(t, mapping={"items": "i1,i2"})),
    Case("sidecar-n-items-disagrees", ["predict", "{tmp}/m.onnx", "--history", "i1"], ("field 'n_items'",), field="n_items",
         setup=lambda t: artifact_with_sidecar(t, n_items=25)),
    Case("sidecar-missing-popular", ["predict", "{tmp}/m.onnx", "--history", "i1"], ("field 'popular'",), field="popular",
         setup=lambda t: artifact_with_sidecar(t, popular=DELETE)),
    Case("sidecar-artifact-changed", ["predict", "{tmp}/m.onnx", "--history", "i1"], ("field 'sha256'",), field="sha256",
         setup=lambda t: (artifact_with_sidecar(t), (t / "m.onnx").write_bytes(b"swapped"))),
    Case("search-space-max-len-zero", ["search", "synthetic-small", "--space", "{tmp}/space.json", "--budget-ratio", "0.5",
                                       "--out", "{tmp}/s"], ("max_len",), setup=lambda t: space_file(t, max_lens=[0])),
    Case("search-space-not-json", ["search", "synthetic-small", "--space", "{tmp}/space.json", "--budget-ratio", "0.5",
                                   "--out", "{tmp}/s"], ("space.json", "not a search space"),
         setup=lambda t: (t / "space.json").write_text("{max_lens: [50]")),
    Case("search-lut-of-another-cpu", ["search", "synthetic-small", "--lut", "{tmp}/lut.json", "--budget-ratio", "0.5",
                                       "--out", "{tmp}/s"], ("field 'device.cpu'", "Other CPU 9000", "--trust-lut"),
         field="device.cpu", setup=lambda t: fake_lut(t, cpu="Other CPU 9000")),
    Case("profile-validate-lut-of-another-cpu", ["profile", "validate", "{tmp}/lut.json", "--subnets", "2"],
         ("field 'device.cpu'",), field="device.cpu", setup=lambda t: fake_lut(t, cpu="Other CPU 9000")),
    Case("malformed-data-file", ["data", "stats", "{tmp}/x.csv"], ("x.csv", "yesterday"),
         setup=lambda t: (t / "x.csv").write_text("user_id,item_id,timestamp\n1,2,3\n1,3,yesterday\n")),
    Case("infeasible-budget", ["search", "synthetic-small", "--budget-mflops", "0.0001", "--out", "{tmp}/s"],
         ("infeasible",), check=absent("s/metrics.json")),

    # 2. output locations: checked before the work
    Case("train-out-through-a-file", ["train", "synthetic-small", *TINY, "--out", "{tmp}/f/run"], ("is not a directory",),
         field="--out", setup=lambda t: (t / "f").write_text("a file")),
    Case("train-out-is-a-file", ["train", "synthetic-small", *TINY, "--out", "{tmp}/f"], ("f: not a directory",),
         field="--out", setup=lambda t: (t / "f").write_text("a file")),
    Case("export-out-is-a-folder", ["export", "{tmp}/run", "--format", "onnx", "--out", "{tmp}/d"], ("is a directory",),
         field="--out", setup=lambda t: (t / "d").mkdir()),
    Case("profile-out-through-a-file", ["profile", "--out", "{tmp}/f/lut.json"], ("is not a directory",),
         field="--out", setup=lambda t: (t / "f").write_text("a file")),

    # 4. one writer per run directory; a finished run is not overwritten without --force
    Case("train-locked", ["train", "synthetic-small", *TINY, "--out", "{tmp}/run"],
         ("locked by easrec train", f"pid {os.getpid()}", socket.gethostname()), field="--out",
         setup=lambda t: lock_file(t, "run", os.getpid()), check=lock_kept("run")),
    Case("search-locked", ["search", "synthetic-small", "--budget-ratio", "0.5", "--out", "{tmp}/run"],
         ("locked by", f"pid {os.getpid()}"), field="--out",
         setup=lambda t: lock_file(t, "run", os.getpid()), check=lock_kept("run")),
    Case("run-locked", ["run", "synthetic-small", "--out", "{tmp}/run"], ("locked by", f"pid {os.getpid()}"), field="--out",
         setup=lambda t: lock_file(t, "run", os.getpid()), check=lock_kept("run")),
    Case("train-over-finished", ["train", "synthetic-small", *TINY, "--out", "{tmp}/run"],
         ("finished run", "metrics.json", "--force", "--resume"), field="--out",
         setup=lambda t: finished_run(t, "run"), check=unchanged_metrics("run")),
    Case("train-seeds-over-finished", ["train", "synthetic-small", *TINY, "--seeds", "2", "--out", "{tmp}/run"],
         ("finished run", "seed-0"), field="--out",
         setup=lambda t: finished_run(t, "run/seed-0"), check=unchanged_metrics("run/seed-0")),
    Case("search-over-finished", ["search", "synthetic-small", "--budget-ratio", "0.5", "--out", "{tmp}/run"],
         ("finished run", "--force"), field="--out", setup=lambda t: finished_run(t, "run"), check=unchanged_metrics("run")),
    Case("run-over-a-train-run", ["run", "synthetic-small", "--out", "{tmp}/run"], ("finished run", "--force"), field="--out",
         setup=lambda t: finished_run(t, "run"), check=unchanged_metrics("run")),
    Case("train-force-and-resume", ["train", "synthetic-small", *TINY, "--force", "--resume", "--out", "{tmp}/run"],
         ("--force", "--resume"), field="--force"),
    Case("run-resume-nothing", ["run", "--resume", "{tmp}/nothing"], ("no such run directory",), field="--resume",
         check=absent("nothing")),

    # 5. numeric options, checked when the command line is parsed
    Case("dropout-2", ["train", "synthetic-small", "--dropout", "2"], ("--dropout must be in [0, 1), got 2",), field="--dropout"),
    Case("dropout-1", ["search", "synthetic-small", "--budget-ratio", "0.5", "--dropout", "1"], ("--dropout",), field="--dropout"),
    Case("dropout-nan", ["train", "synthetic-small", "--dropout", "nan"], ("--dropout", "finite"), field="--dropout"),
    Case("epochs-0", ["train", "synthetic-small", "--epochs", "0"], ("--epochs must be at least 1",), field="--epochs"),
    Case("lr-inf", ["train", "synthetic-small", "--lr", "inf"], ("--lr", "finite"), field="--lr"),
    Case("batch-size-negative", ["train", "synthetic-small", "--batch-size", "-5"], ("--batch-size",), field="--batch-size"),
    Case("seeds-0", ["train", "synthetic-small", "--seeds", "0"], ("--seeds must be at least 1, got 0",), field="--seeds"),
    Case("budget-mflops-inf", ["search", "synthetic-small", "--budget-mflops", "inf"], ("--budget-mflops", "finite"),
         field="--budget-mflops"),
    Case("budget-ratio-nan", ["search", "synthetic-small", "--budget-ratio", "nan"], ("--budget-ratio",), field="--budget-ratio"),
    Case("budget-ms-negative", ["search", "synthetic-small", "--budget-ms", "-1"], ("--budget-ms must be positive",),
         field="--budget-ms"),
    Case("search-epochs-0", ["search", "synthetic-small", "--budget-ratio", "0.5", "--search-epochs", "0"],
         ("--search-epochs",), field="--search-epochs"),
    Case("predict-k-negative", ["predict", "{tmp}/m.onnx", "--k", "-3"], ("--k must be at least 1, got -3",), field="--k"),
    Case("predict-k-0", ["predict", "{tmp}/m.onnx", "--k", "0"], ("--k must be at least 1, got 0",), field="--k"),
    Case("predict-k-word", ["predict", "{tmp}/m.onnx", "--k", "ten"], ("--k", "integer"), field="--k"),
    Case("export-k-0", ["export", "{tmp}/run", "--format", "onnx", "--out", "{tmp}/m.onnx", "--k", "0"], ("--k",), field="--k"),
    Case("export-batch-0", ["export", "{tmp}/run", "--format", "onnx", "--out", "{tmp}/m.onnx", "--batch", "0"], ("--batch",),
         field="--batch"),
    Case("bench-runs-0", ["bench", "{tmp}/m.onnx", "--runs", "0"], ("--runs",), field="--runs"),
    Case("bench-warmup-negative", ["bench", "{tmp}/m.onnx", "--warmup", "-1"], ("--warmup",), field="--warmup"),
    Case("bench-threads-0", ["bench", "{tmp}/m.onnx", "--threads", "0"], ("--threads",), field="--threads"),
    Case("energy-min-seconds-negative", ["energy", "{tmp}/m.onnx", "--min-seconds", "-1"], ("--min-seconds",),
         field="--min-seconds"),
    Case("profile-items-0", ["profile", "--out", "{tmp}/l.json", "--items", "0"], ("--items",), field="--items"),
    Case("profile-max-seconds-inf", ["profile", "--out", "{tmp}/l.json", "--max-seconds", "inf"], ("--max-seconds",),
         field="--max-seconds"),
    Case("profile-workers-negative", ["profile", "--out", "{tmp}/l.json", "--workers", "-1"], ("--workers",), field="--workers"),
    Case("validate-subnets-0", ["profile", "validate", "{tmp}/l.json", "--subnets", "0"], ("--subnets",), field="--subnets"),
    Case("data-k-core-negative", ["data", "stats", "synthetic-small", "--k-core", "-1"], ("--k-core",), field="--k-core"),
    Case("data-min-rating-nan", ["data", "stats", "synthetic-small", "--min-rating", "nan"], ("--min-rating",),
         field="--min-rating"),
    Case("train-min-rating-inf", ["train", "synthetic-small", "--min-rating", "inf"], ("--min-rating",), field="--min-rating"),
    Case("run-budget-ratio-negative", ["run", "--budget-ratio", "-0.5"], ("--budget-ratio",), field="--budget-ratio"),
    Case("run-seed-negative", ["run", "--seed", "-1"], ("--seed",), field="--seed"),
]


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    rc = main(argv)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


@pytest.mark.parametrize("as_json", [False, True], ids=["human", "json"])
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_matrix(case: Case, as_json: bool, tmp_path: Path, capsys):
    if case.setup:
        case.setup(tmp_path)
    argv = [a.format(tmp=tmp_path) for a in case.argv] + (["--json"] if as_json else [])
    rc, out, err = _run(argv, capsys)
    assert rc == case.code, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("easrec: error: "), err
    for needle in case.needles:
        assert needle in lines[0], (needle, lines[0])
    if as_json:
        assert json.loads(out) == {"error": lines[0].removeprefix("easrec: error: "), "field": case.field}
        assert out.count("\n") == 1
    else:
        assert out == ""
    if case.check:
        case.check(tmp_path)


# --- unknown ids and --k in predict ---------------------------------------------------------------

class FakeRunner:
    """Stands in for a runtime: item i scores i; history items excluded, as the exported graph does."""

    runtime, load_ms = "fake", 0.0

    def __init__(self, n_items: int, k: int):
        self.scores, self.k = np.arange(n_items + 1, dtype=np.float32), k

    def run(self, inputs):
        s = np.tile(self.scores, (len(inputs[0]), 1))
        np.put_along_axis(s, inputs[0], -1e4, axis=1)
        s[:, 0] = -1e4
        top = np.argsort(-s, axis=1, kind="stable")[:, : self.k]
        return top, np.take_along_axis(s, top, 1)


@pytest.fixture
def fake_artifact(tmp_path, monkeypatch):
    """tmp/m.onnx with a valid sidecar, loaded by `predict` through a fake runtime."""
    import easrec.devices.runners as runners

    artifact_with_sidecar(tmp_path)
    monkeypatch.setattr(runners, "load_runner", lambda path, threads=1: FakeRunner(20, 10))
    return tmp_path / "m.onnx"


def test_predict_unknown_ids_are_an_error_naming_them(fake_artifact, capsys):
    rc, out, err = _run(["predict", str(fake_artifact), "--history", "i1,nope,i2,gone", "--json"], capsys)
    assert rc == 2
    line = err.strip()
    assert line.count("\n") == 0 and "nope" in line and "gone" in line and "--skip-unknown" in line
    assert json.loads(out)["field"] == "--history"
    # A history of unknown ids only is not silently answered with the popular items.
    rc, out, err = _run(["predict", str(fake_artifact), "--history", "nope"], capsys)
    assert rc == 2 and out == "" and "nope" in err


def test_predict_skip_unknown_drops_them_and_says_so_once(fake_artifact, capsys):
    rc, out, err = _run(["predict", str(fake_artifact), "--history", "i1,nope,i20", "--skip-unknown", "--k", "3", "--json"], capsys)
    assert rc == 0, err
    result = json.loads(out)
    assert result["skipped"] == ["nope"] and result["items"] == ["i19", "i18", "i17"]
    assert err.count("nope") == 1 and err.count("\n") == 1  # one note, not one per layer
    rc, out, err = _run(["predict", str(fake_artifact), "--history", "nope", "--skip-unknown", "--json"], capsys)
    assert rc == 0 and json.loads(out)["empty_history"] is True


def test_predict_k_above_the_artifacts_is_refused(fake_artifact, capsys):
    rc, out, err = _run(["predict", str(fake_artifact), "--history", "i1", "--k", "11"], capsys)
    assert rc == 2 and "--k 11" in err and "top 10" in err
    rc, out, err = _run(["predict", str(fake_artifact), "--history", "i1", "--k", "10", "--json"], capsys)
    assert rc == 0 and len(json.loads(out)["items"]) == 10


# --- untrusted checkpoints: what easrec writes loads weights-only, anything else is refused --------

def test_save_torch_stores_only_weights_only_types(tmp_path):
    from easrec.train.checkpoint import load_torch, save_torch

    save_torch({"loss": np.float32(0.5), "step": np.int64(3), "nested": [(1, np.float64(2.0))], "path": tmp_path,
                "rng": torch.Generator().get_state()}, tmp_path / "c.pt")
    back = torch.load(tmp_path / "c.pt", weights_only=True)
    assert back["loss"] == 0.5 and type(back["loss"]) is float and back["nested"] == [(1, 2.0)] and back["path"] == str(tmp_path)
    assert load_torch(tmp_path / "c.pt")["step"] == 3
    with pytest.raises(TypeError, match="weights_only"):
        save_torch({"state": {"x": object()}}, tmp_path / "d.pt")
    assert not (tmp_path / "d.pt").exists()


def test_trained_run_resumes_and_evaluates_weights_only(tmp_path, capsys):
    """The files a real `train` writes (model.pt, checkpoint.pt with optimizer and RNG state) load with weights_only."""
    out = tmp_path / "run"
    rc, _, err = _run(["train", "synthetic-small", *TINY, "--out", str(out), "--json"], capsys)
    assert rc == 0, err
    for name in ("model.pt", "checkpoint.pt"):
        torch.load(out / name, weights_only=True)
    assert not (out / ".easrec.lock").exists()  # released
    rc, _, err = _run(["train", "synthetic-small", *TINY, "--out", str(out), "--resume"], capsys)
    assert rc == 0, err
    rc, _, err = _run(["evaluate", str(out)], capsys)
    assert rc == 0, err


# --- locks ----------------------------------------------------------------------------------------

def dead_pid() -> int:
    """The pid of a process that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_lock_of_a_dead_process_is_taken_over_with_a_note(tmp_path, capsys, caplog):
    pid = dead_pid()
    lock_file(tmp_path, "run", pid)
    with caplog.at_level("WARNING", logger="easrec.runlock"):
        rc, out, err = _run(["train", "synthetic-small", *TINY, "--out", str(tmp_path / "run"), "--json"], capsys)
    assert rc == 0, err
    assert "stale lock" in caplog.text and f"pid {pid}" in caplog.text
    assert (tmp_path / "run" / "metrics.json").is_file() and not (tmp_path / "run" / ".easrec.lock").exists()


def test_force_replaces_a_finished_run(tmp_path, capsys, caplog):
    finished_run(tmp_path, "run")
    with caplog.at_level("WARNING", logger="easrec.runlock"):
        rc, out, err = _run(["train", "synthetic-small", *TINY, "--out", str(tmp_path / "run"), "--force", "--json"], capsys)
    assert rc == 0, err
    assert "--force" in caplog.text and json.loads((tmp_path / "run" / "metrics.json").read_text())["epochs"] == 1


def test_lock_is_exclusive_and_released(tmp_path):
    from easrec.errors import EasrecError
    from easrec.runlock import LOCK_FILE, RunLock

    run = tmp_path / "run"
    with RunLock(run, "easrec test") as lock:
        held = json.loads((run / LOCK_FILE).read_text())
        assert held["pid"] == os.getpid() and held["command"] == "easrec test" and held["token"] == lock.token
        with pytest.raises(EasrecError, match="locked by easrec test"):
            RunLock(run, "easrec other").acquire()
    assert not (run / LOCK_FILE).exists()
    # An unreadable lock is a writer that is starting while young, debris once old.
    (run / LOCK_FILE).write_text("")
    with pytest.raises(EasrecError, match="starting"):
        RunLock(run, "easrec other").acquire()
    old = time.time() - 60
    os.utime(run / LOCK_FILE, (old, old))
    with RunLock(run, "easrec other"):
        assert json.loads((run / LOCK_FILE).read_text())["command"] == "easrec other"
    assert not (run / LOCK_FILE).exists()


RACER = """
import sys, time
from pathlib import Path
from easrec.errors import EasrecError
from easrec.runlock import RunLock

def wait_for(path):
    deadline = time.time() + 60
    while not path.exists() and time.time() < deadline:
        time.sleep(0.01)

run, go, release = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
wait_for(go)  # every racer is started and waiting: they all try at once
try:
    with RunLock(run, "easrec racer"):
        print("got", flush=True)
        wait_for(release)  # held until every racer has answered
except EasrecError:
    print("refused", flush=True)
"""


@pytest.mark.parametrize("stale", [False, True], ids=["free", "stale"])
def test_racing_writers_get_the_lock_exactly_once(stale, tmp_path):
    """Several processes try at once on a free run directory (or one a dead process left locked): one wins."""
    if stale:
        lock_file(tmp_path, "run", dead_pid())
    go, release = tmp_path / "go", tmp_path / "release"
    procs = [subprocess.Popen([sys.executable, "-c", RACER, str(tmp_path / "run"), str(go), str(release)],
                              stdout=subprocess.PIPE, text=True) for _ in range(4)]
    time.sleep(0.5)
    go.touch()
    try:
        results = sorted(p.stdout.readline().strip() for p in procs)
    finally:
        release.touch()
        for p in procs:
            p.wait(timeout=60)
    assert results == ["got", "refused", "refused", "refused"], results
    assert [p.name for p in (tmp_path / "run").iterdir()] == []  # released, and no .stale-* left behind


def test_a_lock_from_another_host_is_never_judged_stale(tmp_path):
    from easrec.errors import EasrecError
    from easrec.runlock import LOCK_FILE, RunLock

    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": dead_pid(), "host": "some-other-host", "command": "easrec run",
                                                  "started": "then"}))
    with pytest.raises(EasrecError, match="some-other-host"):
        RunLock(tmp_path, "easrec train").acquire()


# --- read-only, full and tiny output locations ------------------------------------------------------

# Commands that write, each pointed at a folder ({out}) it may not write; all must refuse before their work.
WRITERS = [
    ("train", ["train", "synthetic-small", *TINY, "--out", "{out}/run"]),
    ("search", ["search", "synthetic-small", "--budget-ratio", "0.5", "--out", "{out}/run"]),
    ("run", ["run", "synthetic-small", "--out", "{out}/run"]),
    ("profile", ["profile", "--out", "{out}/lut.json"]),
    ("export", ["export", "{tmp}/run", "--format", "onnx", "--out", "{out}/m.onnx"]),
    ("energy", ["energy", "{tmp}/m.onnx", "--out", "{out}/energy.json"]),
    ("report", ["report", "{tmp}/run", "--out", "{out}/report"]),
    ("data-fetch", ["data", "fetch", "ml-100k", "--cache", "{out}/cache"]),
]


# The work each writer does once its output is accepted; any of them called means the check came too late.
WORK = [("easrec.data", "load_dataset"), ("easrec.train.run", "train_run"), ("easrec.search.run", "search_run"),
        ("easrec.pipeline", "Pipeline.run"), ("easrec.profiling.lut", "build_lut"), ("easrec.export", "export_run"),
        ("easrec.profiling.energy", "measure_energy"), ("easrec.profiling.report", "write_report"),
        ("easrec.data.fetch", "fetch")]


@pytest.fixture
def no_work(monkeypatch):
    """Make every piece of real work fail the test: an unwritable output must be refused before any of it."""
    import importlib

    for module, name in WORK:
        owner = importlib.import_module(module)
        *path, attr = name.split(".")
        for part in path:
            owner = getattr(owner, part)

        def started(*a, _what=f"{module}.{name}", **kw):
            raise AssertionError(f"{_what} ran although the output location is not writable")

        monkeypatch.setattr(owner, attr, started)


def _refused_before_work(argv: list[str], capsys, *needles: str) -> None:
    rc, out, err = _run(argv, capsys)
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("easrec: error: "), err
    assert "not writable" in lines[0] and all(n in lines[0] for n in needles), lines[0]


@pytest.mark.parametrize("name, argv", WRITERS, ids=[w[0] for w in WRITERS])
def test_read_only_folder_chmod(name, argv, tmp_path, capsys, no_work):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as root: chmod does not stop writes (the read-only tmpfs test covers this)")
        _refused_before_work([a.format(out=ro, tmp=tmp_path) for a in argv], capsys, "Permission denied")
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


@contextlib.contextmanager
def tmpfs(path: Path, options: str):
    """A tmpfs mounted at `path` for the block; skips the test where mounting is not permitted."""
    path.mkdir()
    try:
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    except FileNotFoundError:
        pytest.skip("no mount command here")
    if proc.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here ({proc.stderr.strip() or proc.returncode})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture(scope="module")
def read_only_tmpfs(tmp_path_factory):
    with tmpfs(tmp_path_factory.mktemp("rofs") / "mnt", "ro,size=64k") as path:
        yield path


@pytest.mark.parametrize("name, argv", WRITERS, ids=[w[0] for w in WRITERS])
def test_read_only_file_system(name, argv, read_only_tmpfs, tmp_path, capsys, no_work):
    _refused_before_work([a.format(out=read_only_tmpfs, tmp=tmp_path) for a in argv], capsys, "Read-only file system")


def test_full_disk_is_refused_before_training(tmp_path, capsys, no_work):
    with tmpfs(tmp_path / "mnt", "size=64k") as mnt:
        with contextlib.suppress(OSError), open(mnt / "filler", "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
        _refused_before_work(["train", "synthetic-small", *TINY, "--out", str(mnt / "run")], capsys, "No space left on device")


def test_disk_filling_up_during_training_is_one_line_and_leaves_no_half_file(tmp_path, capsys):
    # 64 KiB: the probe and the lock fit, the first checkpoint (~160 KB) does not.
    with tmpfs(tmp_path / "mnt", "size=64k") as mnt:
        rc, out, err = _run(["train", "synthetic-small", *TINY, "--out", str(mnt / "run")], capsys)
        lines = err.strip().splitlines()
        assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
        assert lines[0].startswith(f"easrec: error: {mnt / 'run'}") and lines[0].endswith("No space left on device"), lines[0]
        left = sorted(p.name for p in (mnt / "run").iterdir())
        assert not [n for n in left if n.startswith(".tmp-") or n.startswith(".easrec-probe")], left
        assert ".easrec.lock" not in left  # released on the way out


# --- the rest of the issue: JSON output, the interrupt hint, data stats ------------------------------

def test_json_output_is_strict(capsys):
    import argparse

    from easrec.cli.common import emit

    emit(argparse.Namespace(json=True), {"a": float("nan"), "b": [float("inf"), np.float32("-inf")], "c": 1.5, "d": np.float64(2)})
    text = capsys.readouterr().out

    def refuse(constant):
        raise AssertionError(f"{constant} in JSON output")

    assert json.loads(text, parse_constant=refuse) == {"a": None, "b": [None, None], "c": 1.5, "d": 2.0}


@pytest.mark.parametrize("argv, hint, not_hint", [
    (["profile", "--out", "{tmp}/lut.json"], "rerun the same command", "--resume"),
    (["train", "synthetic-small", *TINY, "--out", "{tmp}/run"], "--resume", None),
])
def test_interrupt_hint_names_what_the_command_takes(argv, hint, not_hint, tmp_path, monkeypatch, capsys):
    import easrec.profiling.lut
    import easrec.train.run

    def interrupted(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(easrec.profiling.lut, "build_lut", interrupted)
    monkeypatch.setattr(easrec.train.run, "train_run", interrupted)
    rc, out, err = _run([a.format(tmp=tmp_path) for a in argv], capsys)
    assert rc == 130 and hint in err
    assert not_hint is None or not_hint not in err
    assert not (tmp_path / "run" / ".easrec.lock").exists()


def test_os_error_without_a_file_name_names_the_output(tmp_path, monkeypatch, capsys):
    import errno

    import easrec.train.run

    def disk_full(*a, **kw):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(easrec.train.run, "train_run", disk_full)
    rc, out, err = _run(["train", "synthetic-small", *TINY, "--out", str(tmp_path / "run"), "--json"], capsys)
    assert rc == 2 and err.strip() == f"easrec: error: {tmp_path / 'run'}: No space left on device"
    assert json.loads(out)["error"] == f"{tmp_path / 'run'}: No space left on device"


def test_data_stats_density_counts_distinct_pairs(tmp_path, capsys):
    rows = ["user_id,item_id,timestamp"] + [f"{u},{1 + t % 2},{t}" for u in (1, 2, 3) for t in range(10)]
    (tmp_path / "repeats.csv").write_text("\n".join(rows) + "\n")
    rc, out, err = _run(["data", "stats", str(tmp_path / "repeats.csv"), "--json"], capsys)
    stats = json.loads(out)
    assert rc == 0 and stats["interactions"] == 30 and stats["density"] == 1.0  # 6 distinct pairs of 3 × 2


def test_a_pre_ln_model_file_is_refused_with_a_retrain_hint(tmp_path):
    """Model files from the pre-LN SASRec (final `ln_f`, no input `ln_in`) would load nothing sensible."""
    import torch

    from easrec.errors import EasrecError
    from easrec.model import SASRec
    from easrec.train.checkpoint import load_model, save_model
    from easrec.train.run import sasrec_arch

    model = SASRec(sasrec_arch(8, 16, 1, 1, 32), 30, 0.0)
    save_model(model, tmp_path / "model.pt")
    payload = torch.load(tmp_path / "model.pt", weights_only=True)
    state = payload["state_dict"]
    state["ln_f.weight"], state["ln_f.bias"] = state.pop("ln_in.weight"), state.pop("ln_in.bias")
    torch.save(payload, tmp_path / "model.pt")
    with pytest.raises(EasrecError, match="model.pt: holds the earlier pre-LN SASRec.*retrain"):
        load_model(tmp_path / "model.pt")
