"""Tests of `easrec compare` and `easrec train --seeds`: per-user metrics, paired bootstrap, seed summaries."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from easrec.cli import main as cli_main
from easrec.errors import EasrecError
from easrec.train.stats import compare_runs

TINY = ["--max-len", "20", "--d", "16", "--layers", "1", "--heads", "1", "--ffn", "32", "--threads", "1",
        "--batch-size", "64", "--lr", "5e-3"]


def train(out: Path, *extra: str) -> dict:
    assert cli_main(["train", "synthetic-small", *TINY, "--epochs", "2", "--out", str(out), "--json", *extra]) == 0
    return json.loads((out / "metrics.json").read_text()) if (out / "metrics.json").exists() else {}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two seeds of a 2-epoch model (A) and of a 4-epoch one (B), via `easrec train --seeds 2`."""
    root = tmp_path_factory.mktemp("cmp")
    assert cli_main(["train", "synthetic-small", *TINY, "--epochs", "1", "--seeds", "2", "--out", str(root / "A"),
                     "--json"]) == 0
    assert cli_main(["train", "synthetic-small", *TINY, "--epochs", "4", "--seeds", "2", "--out", str(root / "B"),
                     "--json"]) == 0
    return root


def compare_json(capsys, *argv: str) -> dict:
    capsys.readouterr()
    assert cli_main(["compare", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_train_seeds_writes_seed_runs_and_summary(runs):
    summary = json.loads((runs / "A" / "seeds.json").read_text())
    assert summary["seeds"] == [0, 1] and summary["runs"] == ["seed-0", "seed-1"]
    per_seed = [json.loads((runs / "A" / f"seed-{s}" / "metrics.json").read_text())["test"]["ndcg@10"] for s in (0, 1)]
    nd = summary["test"]["ndcg@10"]
    assert nd["values"] == per_seed and nd["mean"] == pytest.approx(np.mean(per_seed))
    assert nd["std"] == pytest.approx(np.std(per_seed, ddof=1))
    assert nd["ci_low"] <= nd["mean"] <= nd["ci_high"]
    for s in (0, 1):
        assert (runs / "A" / f"seed-{s}" / "per_user.json").is_file()
    # Different seeds really are different runs.
    assert per_seed[0] != per_seed[1] or summary["test"]["hr@20"]["values"][0] != summary["test"]["hr@20"]["values"][1]


def test_compare_identical_run_interval_is_zero(runs, capsys):
    r = compare_json(capsys, str(runs / "A" / "seed-0"), str(runs / "A" / "seed-0"))
    assert r["ci_low"] == 0.0 and r["ci_high"] == 0.0 and r["diff"] == 0.0 and r["includes_zero"]
    assert r["mean_a"] == r["mean_b"] and "includes 0" in r["verdict"]


def test_compare_two_runs_means_match_metrics(runs, capsys):
    a, b = runs / "A" / "seed-0", runs / "B" / "seed-0"
    r = compare_json(capsys, str(a), str(b), "--metric", "hr@10", "--bootstrap", "2000", "--seed", "3")
    ma = json.loads((a / "metrics.json").read_text())["test"]["hr@10"]
    mb = json.loads((b / "metrics.json").read_text())["test"]["hr@10"]
    assert r["mean_a"] == pytest.approx(ma, abs=1e-6) and r["mean_b"] == pytest.approx(mb, abs=1e-6)
    assert r["diff"] == pytest.approx(mb - ma, abs=1e-6) and r["ci_low"] <= r["diff"] <= r["ci_high"]
    assert r["metric"] == "hr@10" and r["bootstrap"] == 2000 and r["n_users"] == 200
    # The human form says the same in a table.
    assert cli_main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "B − A" in out and ("includes 0" in out or "excludes 0" in out)


def test_compare_several_seeds_per_side(runs, capsys):
    explicit = compare_json(capsys, "--a", str(runs / "A" / "seed-0"), str(runs / "A" / "seed-1"),
                            "--b", str(runs / "B" / "seed-0"), str(runs / "B" / "seed-1"))
    folders = compare_json(capsys, str(runs / "A"), str(runs / "B"))  # a --seeds folder stands for its seeds
    for key in ("mean_a", "mean_b", "diff", "ci_low", "ci_high"):
        assert explicit[key] == pytest.approx(folders[key])
    seeds_a = json.loads((runs / "A" / "seeds.json").read_text())["test"]["ndcg@10"]
    assert explicit["a"]["seeds"]["n"] == 2
    assert explicit["a"]["seeds"]["mean"] == pytest.approx(seeds_a["mean"], abs=1e-6)
    assert explicit["a"]["seeds"]["std"] == pytest.approx(seeds_a["std"], abs=1e-6)
    # The per-user average over seeds has the mean of the seed means.
    assert explicit["mean_a"] == pytest.approx(seeds_a["mean"], abs=1e-6)


def test_compare_different_data_or_split_names_field(runs, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(runs / "A" / "seed-0", other)
    rec = json.loads((other / "per_user.json").read_text())
    rec["data"]["targets_sha256"] = "0" * 64
    (other / "per_user.json").write_text(json.dumps(rec))
    capsys.readouterr()
    assert cli_main(["compare", str(runs / "A" / "seed-0"), str(other)]) == 2
    err = capsys.readouterr().err
    assert "data.targets_sha256" in err and "different data sets or splits" in err and err.count("\n") == 1
    rec["data"]["items"] = 1000
    (other / "per_user.json").write_text(json.dumps(rec))
    with pytest.raises(EasrecError, match="'data.items' is 1000 but 293"):
        compare_runs([runs / "A" / "seed-0"], [other])
    # Same data, other convention for seen items: a different metric, refused as well.
    rec = json.loads((runs / "A" / "seed-0" / "per_user.json").read_text())
    rec["keep_seen"] = True
    (other / "per_user.json").write_text(json.dumps(rec))
    with pytest.raises(EasrecError, match="'keep_seen'"):
        compare_runs([runs / "A" / "seed-0"], [other])


def test_compare_bad_arguments(runs, tmp_path, capsys):
    a = str(runs / "A" / "seed-0")
    for argv, message in [
        ([a], "exactly two runs"),
        ([a, a, "--a", a], "not both"),
        (["--a", a], "both --a"),
        ([a, str(tmp_path / "nope")], "run directory not found"),
        ([a, str(tmp_path)], "per-user metrics not found"),
        ([a, a, "--metric", "auc"], "no per-user metric 'auc'"),
    ]:
        capsys.readouterr()
        assert cli_main(["compare", *argv]) == 2, argv
        assert message in capsys.readouterr().err, argv


def test_train_seeds_errors_and_resume(runs, tmp_path, capsys):
    capsys.readouterr()
    assert cli_main(["train", "synthetic-small", *TINY, "--seeds", "0", "--out", str(tmp_path / "x")]) == 2
    assert "--seeds must be at least 1, got 0" in capsys.readouterr().err
    assert cli_main(["train", "synthetic-small", *TINY, "--loss", "sampled-ce", "--negatives", "0",
                     "--out", str(tmp_path / "x")]) == 2
    assert "--negatives" in capsys.readouterr().err
    # --resume skips seeds that finished: the summary is rebuilt from their metrics unchanged.
    copy = tmp_path / "A"
    shutil.copytree(runs / "A", copy)
    before = json.loads((copy / "seeds.json").read_text())
    (copy / "seeds.json").unlink()
    assert cli_main(["train", "synthetic-small", *TINY, "--epochs", "1", "--seeds", "2", "--out", str(copy),
                     "--resume", "--json"]) == 0
    after = json.loads((copy / "seeds.json").read_text())
    assert after["test"] == before["test"]


def test_train_sampled_ce_cli(tmp_path):
    m = train(tmp_path / "s", "--loss", "sampled-ce", "--negatives", "32")
    cfg = json.loads((tmp_path / "s" / "config.json").read_text())["train"]
    assert cfg["loss"] == "sampled-ce" and cfg["negatives"] == 32
    assert 0.0 <= m["test"]["ndcg@10"] <= 1.0
