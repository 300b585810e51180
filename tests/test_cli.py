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
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    if out:  # with --json the same error also comes as one JSON object on stdout
        assert json.loads(out)["error"] == lines[0].removeprefix("easrec: error: ")
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


@pytest.mark.parametrize("name, text, word", [
    ("data.xyz", "hello world\nsome other line\n", "format"),
    ("x.csv", "user_id,item_id,rating\n1,2,5\n1,3,4\n", "time"),
])
def test_error_unreadable_data_names_the_file_and_the_problem(tmp_path, capsys, name, text, word):
    f = tmp_path / name
    f.write_text(text)
    rc, out, err = run_cli(capsys, "train", str(f), *TINY, "--out", str(tmp_path / "r"))
    line = assert_one_line_error(rc, out, err, str(f))
    assert word in line


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


def test_debug_after_the_command_shows_the_exception_too(tmp_path, capsys):
    from easrec.errors import EasrecError

    with pytest.raises(EasrecError):
        main(["train", str(tmp_path / "nope.csv"), *TINY, "--out", str(tmp_path / "r"), "--debug"])
    # Without --debug the same failure is one line, exit 2.
    rc, out, err = run_cli(capsys, "train", str(tmp_path / "nope.csv"), *TINY, "--out", str(tmp_path / "r"))
    assert_one_line_error(rc, out, err, "nope.csv")


def test_global_flags_are_not_reset_by_the_command():
    from easrec.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["--debug", "-v", "data", "stats", "synthetic"]).debug is True
    assert parser.parse_args(["--debug", "-v", "data", "stats", "synthetic"]).verbose is True
    assert parser.parse_args(["profile", "validate", "lut.json", "--debug"]).debug is True
    assert parser.parse_args(["data", "stats", "synthetic"]).debug is False


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


# --- devices: one set of options for every measuring command ----------------------------------------

LUT_SPACE = {"max_lens": [10, 20], "ds": [16], "heads": [1], "ffns": [32], "depths": [1, 2], "attentions": ["softmax"],
             "head_size": 16, "gates": False}


def fake_lut(path: Path, *, runtime: str = "onnxruntime", dtype: str = "fp32", threads: int = 1, space: dict | None = None,
             extra=(), n_items: int = 293, **device_fields):
    """A complete LUT for this machine's cpu (entries = a scaled FLOPs count), with `device_fields` overridden."""
    from easrec.cost import space_components
    from easrec.cost.flops import FlopsCostModel
    from easrec.devices import get_device
    from easrec.profiling.lut import LatencyTable, device_fingerprint, new_data
    from easrec.space import SearchSpace

    space = SearchSpace.from_dict(space or LUT_SPACE)
    fp = device_fingerprint(get_device("cpu", threads=threads).info(), runtime, dtype)
    fp.update(threads=threads, **device_fields)
    data = new_data(fp, space, n_items, 1, {})
    flops = FlopsCostModel(space, n_items)
    for c in space_components(space, extra):
        ms = 0.01 + 1e-3 * flops.component_cost(c)
        data["entries"][c.id()] = {"median_ms": ms, "p10_ms": ms, "p90_ms": ms, "runs": 5}
    path.write_text(json.dumps(data))
    return LatencyTable(data, source=str(path))


def test_profile_on_an_unreachable_board_is_one_line(tmp_path, capsys):
    lut = tmp_path / "lut.json"
    rc, out, err = run_cli(capsys, "profile", "--device", "ssh:nobody@127.0.0.1:1", "--threads", "2", "--out", str(lut))
    assert_one_line_error(rc, out, err, "ssh:nobody@127.0.0.1:1")
    assert not lut.exists()


@pytest.mark.parametrize("argv, needles", [
    (["profile", "--device", "cpu", "--runner", "/x/executor_runner", "--out", "{tmp}/l.json"], ["--runner", "cpu"]),
    (["profile", "validate", "{lut}", "--device", "cpu", "--runner", "/x/executor_runner"], ["--runner", "cpu"]),
    (["profile", "--device", "cuda", "--out", "{tmp}/l.json"], ["--runtime executorch", "cuda:0"]),
    (["profile", "--device", "android:R58", "--runtime", "onnxruntime", "--out", "{tmp}/l.json"], ["--runtime onnxruntime"]),
    (["profile", "--device", "cpu:2", "--threads", "3", "--out", "{tmp}/l.json"], ["--threads 3", "cpu:2"]),
    (["bench", "{tmp}/m.pte", "--device", "cuda", "--cores", "0"], ["--cores", "cuda"]),
    (["bench", "{tmp}/m.pte", "--threads", "0"], ["--threads"]),
    (["energy", "{tmp}/m.pte", "--device", "android:R58", "--ssh-key", "/k"], ["--ssh-key", "android:R58"]),
    (["energy", "{tmp}/m.pte", "--device", "ssh:pi@board"], ["energy", "ssh"]),
    (["run", "--device", "cuda", "--runner", "/x", "--out", "{tmp}/r"], ["--runner", "cuda"]),
    (["run", "--device", "cpu", "--remote-python", "/venv/bin/python", "--out", "{tmp}/r"], ["--remote-python"]),
])
def test_a_device_option_the_kind_does_not_take_is_one_line(tmp_path, capsys, argv, needles):
    lut = tmp_path / "lut.json"
    fake_lut(lut)
    argv = [a.format(tmp=tmp_path, lut=lut) for a in argv]
    rc, out, err = run_cli(capsys, *argv)
    assert_one_line_error(rc, out, err, *needles)
    assert not (tmp_path / "l.json").exists() and not (tmp_path / "r").exists()


@pytest.mark.parametrize("command", [["profile", "--out", "l.json"], ["profile", "validate", "l.json"], ["bench", "m.pte"],
                                     ["energy", "m.pte"], ["run"]])
def test_every_measuring_command_builds_its_device_the_same_way(command):
    from easrec.cli import build_parser
    from easrec.cli.devices import device_from_args

    p = build_parser()
    cases = [
        (["--device", "cpu", "--threads", "2", "--cores", "0"], lambda d: d.kind == "cpu" and d.threads == 2 and d.cores == [0]),
        (["--device", "cpu:2"], lambda d: d.kind == "cpu" and d.threads == 2),
        (["--device", "android:R58", "--runner", "/x/executor_runner", "--threads", "4"],
         lambda d: d.kind == "android" and str(d.runner) == "/x/executor_runner" and d.threads == 4),
        (["--device", "ssh:pi@board:2200", "--ssh-key", "/k", "--remote-python", "/venv/bin/python", "--threads", "2"],
         lambda d: d.kind == "ssh" and d.identity == "/k" and d.python == "/venv/bin/python" and d.port == 2200 and d.threads == 2),
        (["--device", "cuda:1", "--threads", "3"], lambda d: d.kind == "cuda" and d.index == 1 and d.threads == 3),
    ]
    for options, ok in cases:
        args = p.parse_args([*command, *options])
        assert ok(device_from_args(args)), (command, options)


def json_space(tmp_path: Path, **changes) -> str:
    """LUT_SPACE (with `changes`) written to a file, for --space."""
    path = tmp_path / f"space{len(changes)}.json"
    path.write_text(json.dumps({**LUT_SPACE, **changes}))
    return str(path)


@pytest.mark.parametrize("options, field", [
    (["--runtime", "executorch"], "device.runtime"),
    (["--dtype", "int8"], "device.dtype"),
    (["--threads", "2"], "device.threads"),
    (["--space", "{other_space}"], "space"),
])
def test_profile_refuses_to_resume_a_lut_for_another_runtime_dtype_threads_or_space(tmp_path, capsys, options, field):
    lut = tmp_path / "lut.json"
    fake_lut(lut, runtime="onnxruntime")
    before = lut.read_text()
    options = [o.format(other_space=json_space(tmp_path, ds=[16, 32])) for o in options]
    # The LUT's own settings first; the option under test (given last) overrides one of them.
    rc, out, err = run_cli(capsys, "profile", "--device", "cpu", "--runtime", "onnxruntime", "--space", json_space(tmp_path),
                           *options, "--out", str(lut))
    assert_one_line_error(rc, out, err, f"'{field}'", str(lut))
    assert lut.read_text() == before


def test_profile_on_a_lut_from_another_cpu_names_the_field(tmp_path, capsys):
    lut = tmp_path / "lut.json"
    fake_lut(lut, cpu="Some Other CPU 9000")
    rc, out, err = run_cli(capsys, "profile", "--runtime", "onnxruntime", "--space", json_space(tmp_path), "--out", str(lut))
    assert_one_line_error(rc, out, err, "'device.cpu'", "Some Other CPU 9000")
    rc, out, err = run_cli(capsys, "profile", "validate", str(lut), "--subnets", "4")
    assert_one_line_error(rc, out, err, "'device.cpu'")


def test_profile_validate_refuses_another_thread_count(tmp_path, capsys):
    lut = tmp_path / "lut.json"
    fake_lut(lut, threads=1)
    for options in (["--threads", "2"], ["--device", "cpu:2"]):
        rc, out, err = run_cli(capsys, "profile", "validate", str(lut), *options)
        assert_one_line_error(rc, out, err, "'device.threads'", "2 thread(s)")


# --- search: the LUT's own space, its device, the budget reference -----------------------------------

SEARCH_FAST = ["--search-epochs", "1", "--epochs", "1", "--batch-size", "64", "--threads", "1"]


@pytest.mark.parametrize("fields, options, needles", [
    ({"cpu": "Some Other CPU 9000"}, [], ["'device.cpu'", "Some Other CPU 9000", "--trust-lut"]),
    ({"machine": "aarch64"}, [], ["'device.machine'"]),
    ({"runtime_version": "0.0.1"}, [], ["'device.runtime_version'"]),
    ({"kind": "android"}, [], ["'device.kind'"]),
    ({}, ["--device", "cpu:2"], ["'device.threads'"]),
    ({}, ["--space", "{other_space}"], ["'space.ds'", "--space"]),
    ({}, ["--reference", "{tmp}/absent"], ["--reference", "absent"]),
    ({}, ["--gate-input", "position"], ["'space.gate_input'", "--gate-input"]),
])
def test_search_refuses_a_lut_for_another_device_or_space(tmp_path, capsys, fields, options, needles):
    lut = tmp_path / "lut.json"
    fake_lut(lut, **fields)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**LUT_SPACE, "ds": [16, 32]}))
    options = [o.format(other_space=other, tmp=tmp_path) for o in options]
    rc, out, err = run_cli(capsys, "search", "synthetic-small", "--lut", str(lut), "--budget-ms", "1", *options,
                           "--out", str(tmp_path / "s"))
    assert_one_line_error(rc, out, err, *needles)
    assert not (tmp_path / "s" / "metrics.json").exists()


def test_search_trust_lut_skips_the_device_check(tmp_path, capsys):
    lut = tmp_path / "lut.json"
    fake_lut(lut, cpu="Some Other CPU 9000")
    # Past the fingerprint, the next check is the budget's unit: the LUT was read and accepted.
    rc, out, err = run_cli(capsys, "search", "synthetic-small", "--lut", str(lut), "--trust-lut", "--budget-mflops", "1",
                           "--out", str(tmp_path / "s"))
    assert_one_line_error(rc, out, err, "--budget-mflops needs a cost model in MFLOPs")


def test_search_uses_the_luts_own_space_and_the_reference_run(trained, tmp_path, capsys):
    from easrec.space import Arch, SearchSpace

    run, *_ = trained
    ref = Arch.from_dict(json.loads((run / "arch.json").read_text()))
    lut = tmp_path / "lut.json"
    table = fake_lut(lut, extra=[ref])
    assert SearchSpace.from_dict(LUT_SPACE) != SearchSpace()  # not the default space: today's search refused it
    out = tmp_path / "s"
    rc, so, err = run_cli(capsys, "search", "synthetic-small", "--lut", str(lut), "--budget-ratio", "1.0",
                          "--reference", str(run), *SEARCH_FAST, "--out", str(out), "--json")
    assert rc == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert SearchSpace.from_dict(LUT_SPACE).contains(Arch.from_dict(metrics["arch"]))
    # Budget = R × the reference's cost predicted by the same (corrected) table the search used.
    assert metrics["budget"] == pytest.approx(table.cost(ref))
    assert metrics["reference_cost"] == pytest.approx(table.cost(ref))
    assert metrics["predicted_cost"] <= metrics["budget"] + 1e-9
    assert metrics["unit"] == "ms"


def test_train_and_search_defaults_are_the_trainers_measured_defaults():
    """The command line trains as `TrainConfig` does by default (the recipe benchmarks/README.md measured)."""
    from easrec.cli import build_parser
    from easrec.train.trainer import TrainConfig

    default = TrainConfig()
    train = build_parser().parse_args(["train", "synthetic-small"])
    assert (train.targets, train.batch_size, train.patience, train.lr) == (default.targets, default.batch_size, default.patience, default.lr)
    assert (train.weight_decay, train.beta2, train.grad_clip) == (default.weight_decay, default.beta2, default.grad_clip)
    assert (train.plateau_factor, train.plateau_evals) == (default.plateau_factor, default.plateau_evals)
    search = build_parser().parse_args(["search", "synthetic-small", "--budget-ratio", "0.5"])
    assert (search.targets, search.patience) == (default.targets, default.patience)


def test_search_gate_input_sets_the_spaces_gates():
    from easrec.search.run import load_cost_model

    assert load_cost_model(None, 100, None).space.gate_input == "mean"
    model = load_cost_model(None, 100, None, gate_input="position")
    assert model.space.gate_input == "position"
    assert model.space.largest().gate_input == "position"
