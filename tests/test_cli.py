"""Tests of the `easrec train` / `easrec evaluate` command line and its error handling."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest

from easrec.cli import main

TINY = ["--max-len", "20", "--d", "16", "--layers", "1", "--heads", "1", "--ffn", "32", "--epochs", "2",
        "--batch-size", "64", "--lr", "5e-3", "--threads", "1", "--seed", "0"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """`easrec train synthetic-small ... --json` run once; returns (run dir, rc, stdout, stderr)."""
    out = tmp_path_factory.mktemp("cli") / "run"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        rc = main(["train", "synthetic-small", *TINY, "--out", str(out), "--json"])
    return out, rc, stdout.getvalue(), stderr.getvalue()


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def assert_one_line_error(rc: int, out: str, err: str, *needles: str) -> str:
    assert rc == 2, err
    assert out == ""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("easrec: error: ")
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# --- train / evaluate -------------------------------------------------------------------------------

def test_train_json_stdout(trained):
    out, rc, stdout, stderr = trained
    assert rc == 0, stderr
    lines = stdout.strip().splitlines()
    assert len(lines) == 1  # exactly one JSON object, nothing else
    result = json.loads(lines[0])
    assert isinstance(result, dict)
    for key in ("test", "valid", "epoch_seconds", "train_seconds", "arch"):
        assert key in result, key
    assert set(result["test"]) >= {"hr@10", "ndcg@10", "mrr@10", "hr@5", "ndcg@20"}
    assert len(result["epoch_seconds"]) == 2 and result["train_seconds"] > 0
    assert result["arch"]["d"] == 16 and result["arch"]["max_len"] == 20 and len(result["arch"]["layers"]) == 1
    assert result["run"] == str(out)
    assert "history" not in result


def test_train_writes_metrics_json(trained):
    out, rc, stdout, _ = trained
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("test", "valid", "epoch_seconds", "train_seconds", "arch", "history"):
        assert key in metrics, key
    printed = json.loads(stdout)
    assert metrics["test"] == printed["test"] and metrics["valid"] == printed["valid"]
    assert metrics["epoch_seconds"] == printed["epoch_seconds"]
    assert (out / "model.pt").is_file() and (out / "arch.json").is_file()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".tmp-")]


def test_evaluate_json_matches_training(trained, capsys):
    out, _, stdout, _ = trained
    train_test = json.loads(stdout)["test"]
    rc, so, se = run_cli(capsys, "evaluate", str(out), "--json")
    assert rc == 0, se
    result = json.loads(so)
    assert len(so.strip().splitlines()) == 1
    assert result["protocol"] == "full" and result["keep_seen"] is False
    for k, v in train_test.items():
        assert result["test"][k] == pytest.approx(v, abs=1e-9), k

    rc, so, se = run_cli(capsys, "evaluate", str(out), "--keep-seen", "--json")
    assert rc == 0, se
    kept = json.loads(so)
    assert kept["keep_seen"] is True
    assert kept["test"]["ndcg@10"] == pytest.approx(json.loads(stdout)["test_keep_seen"]["ndcg@10"], abs=1e-9)


def test_evaluate_sampled_protocol(trained, capsys):
    out, _, stdout, _ = trained
    rc, so, se = run_cli(capsys, "evaluate", str(out), "--protocol", "sampled-100", "--json")
    assert rc == 0, se
    result = json.loads(so)
    assert result["protocol"] == "sampled-100"
    full = json.loads(stdout)["test"]
    assert set(result["test"]) == set(full)
    assert all(0.0 <= v <= 1.0 for v in result["test"].values())
    # Against 100 sampled negatives rather than the whole catalogue, hits come more easily.
    assert result["test"]["hr@20"] >= full["hr@20"]
    assert result["test"] != full


def test_evaluate_human_output(trained, capsys):
    out, *_ = trained
    rc, so, se = run_cli(capsys, "evaluate", str(out))
    assert rc == 0, se
    assert "ndcg@10" in so
    with pytest.raises(json.JSONDecodeError):
        json.loads(so)


# --- errors -----------------------------------------------------------------------------------------

def test_error_missing_file(tmp_path, capsys):
    missing = tmp_path / "nope.csv"
    rc, out, err = run_cli(capsys, "train", str(missing), *TINY, "--out", str(tmp_path / "r"), "--json")
    assert_one_line_error(rc, out, err, str(missing))


def test_error_unknown_format(tmp_path, capsys):
    f = tmp_path / "data.xyz"
    f.write_text("hello world\nsome other line\n")
    rc, out, err = run_cli(capsys, "train", str(f), *TINY, "--out", str(tmp_path / "r"))
    line = assert_one_line_error(rc, out, err, str(f))
    assert "format" in line


def test_error_header_without_time_column(tmp_path, capsys):
    f = tmp_path / "x.csv"
    f.write_text("user_id,item_id,rating\n1,2,5\n1,3,4\n")
    rc, out, err = run_cli(capsys, "train", str(f), *TINY, "--out", str(tmp_path / "r"))
    line = assert_one_line_error(rc, out, err, str(f))
    assert "time" in line


def test_error_non_numeric_timestamp_names_line(tmp_path, capsys):
    f = tmp_path / "x.csv"
    rows = ["user_id,item_id,timestamp"] + [f"{u},{i},{100 + i}" for u in range(3) for i in range(5)]
    rows[7] = "1,2,yesterday"  # file line 8 (header is line 1)
    f.write_text("\n".join(rows) + "\n")
    rc, out, err = run_cli(capsys, "train", str(f), *TINY, "--out", str(tmp_path / "r"))
    line = assert_one_line_error(rc, out, err, str(f), "yesterday")
    assert f"{f}:8" in line or "line 8" in line, line


def test_error_no_user_left_after_k_core(tmp_path, capsys):
    rc, out, err = run_cli(capsys, "train", "synthetic-small", *TINY, "--k-core", "1000", "--out", str(tmp_path / "r"))
    line = assert_one_line_error(rc, out, err, "no user left")
    assert "1000" in line


def test_error_max_len_zero(tmp_path, capsys):
    argv = ["train", "synthetic-small", *TINY, "--out", str(tmp_path / "r")]
    argv[argv.index("--max-len") + 1] = "0"
    rc, out, err = run_cli(capsys, *argv)
    assert_one_line_error(rc, out, err, "--max-len")


def test_error_corrupt_checkpoint_for_evaluate(trained, tmp_path, capsys):
    out, *_ = trained
    run = tmp_path / "run"
    shutil.copytree(out, run)
    model = run / "model.pt"
    model.write_bytes(model.read_bytes()[:1000])
    rc, so, err = run_cli(capsys, "evaluate", str(run), "--json")
    assert_one_line_error(rc, so, err, str(model), "corrupt")


def test_error_evaluate_missing_run(tmp_path, capsys):
    rc, so, err = run_cli(capsys, "evaluate", str(tmp_path / "absent"))
    assert_one_line_error(rc, so, err, str(tmp_path / "absent"))


def test_error_resume_without_checkpoint(tmp_path, capsys):
    rc, out, err = run_cli(capsys, "train", "synthetic-small", *TINY, "--resume", "--out", str(tmp_path / "r"), "--json")
    assert_one_line_error(rc, out, err, "--resume", "checkpoint")


def test_progress_bar_stays_off_stdout(tmp_path, capsys):
    rc, out, err = run_cli(capsys, "train", "synthetic-small", *TINY, "--resume", "--out", str(tmp_path / "r"))
    assert rc == 2 and "--resume" in err
    assert out == ""


def test_debug_shows_the_exception(tmp_path):
    from easrec.errors import EasrecError

    with pytest.raises(EasrecError):
        main(["--debug", "train", str(tmp_path / "nope.csv"), *TINY, "--out", str(tmp_path / "r")])


def test_evaluate_from_another_directory(tmp_path, monkeypatch, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    rows = ["user_id,item_id,timestamp"] + [f"{u},{(u * 7 + i) % 40},{i}" for u in range(30) for i in range(12)]
    (tmp_path / "a" / "d.csv").write_text("\n".join(rows) + "\n")
    monkeypatch.chdir(tmp_path / "a")
    argv = ["train", "d.csv", *TINY, "--out", str(tmp_path / "run"), "--json"]
    argv[argv.index("--epochs") + 1] = "1"
    rc, out, err = run_cli(capsys, *argv)
    assert rc == 0, err
    monkeypatch.chdir(tmp_path / "b")
    rc, out, err = run_cli(capsys, "evaluate", str(tmp_path / "run"), "--json")
    assert rc == 0, err
