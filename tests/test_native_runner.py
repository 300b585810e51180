"""The native runner (runner/): built here against the ExecuTorch wheel, run on a real easrec `.pte`.

Its top-k must equal the Python ExecuTorch runtime's on the same input, and the android device must
parse its real output (through tests/fake_adb.py, an `adb` that runs everything on this machine).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from easrec.devices import native_runner as nr
from easrec.errors import EasrecError

TESTS = Path(__file__).resolve().parent
L, N_ITEMS, K = 20, 50, 10


@pytest.fixture(scope="session")
def runner_binary(tmp_path_factory) -> Path:
    """easrec_runner built once per session (about 10 s), or the tests skip with the reason."""
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not on PATH: the native runner cannot be built here")
    if nr.find_compiler() is None:
        pytest.skip("no C++ compiler on PATH: the native runner cannot be built here")
    return nr.build_runner(tmp_path_factory.mktemp("runner-build"), jobs=2)


@pytest.fixture(scope="session")
def tiny_pte(tmp_path_factory) -> Path:
    """A real easrec artifact (SASRec L20 d16, 50 items, top-10 graph, XNNPACK), random weights."""
    import torch

    from easrec.export import export_model
    from easrec.model import SASRec
    from easrec.space import Arch, LayerArch

    torch.manual_seed(0)
    model = SASRec(Arch(max_len=L, d=16, layers=(LayerArch(1, 32),), head_size=16), N_ITEMS, dropout=0.0).eval()
    path = tmp_path_factory.mktemp("pte") / "tiny.pte"
    export_model(model, path, "executorch", k=K)
    return path


@pytest.fixture(scope="session")
def tiny_pte_int8(tmp_path_factory) -> Path:
    """The same architecture exported int8 (dynamic): needs the quantized kernels linked."""
    import torch

    from easrec.export import export_model
    from easrec.model import SASRec
    from easrec.space import Arch, LayerArch

    torch.manual_seed(0)
    model = SASRec(Arch(max_len=L, d=16, layers=(LayerArch(1, 32),), head_size=16), N_ITEMS, dropout=0.0).eval()
    path = tmp_path_factory.mktemp("pte") / "tiny-int8.pte"
    export_model(model, path, "executorch", k=K, quantize="int8")
    return path


def padded(history: list[int]) -> np.ndarray:
    """The graph's input for a history: the newest L ids, left padded with 0."""
    ids = np.zeros((1, L), dtype=np.int64)
    tail = history[-L:]
    ids[0, L - len(tail):] = tail
    return ids


def python_topk(pte: Path, history: list[int]) -> tuple[list[int], np.ndarray]:
    """(items, scores) from the Python ExecuTorch runtime on the same input."""
    from easrec.devices.runners import load_runner

    items, scores = load_runner(pte, threads=1).run([padded(history)])
    return items[0].tolist(), scores[0]


def test_build_records_the_executorch_version(runner_binary):
    record = nr.read_build_record(runner_binary.parent)
    assert nr._release(record["executorch_version"]) == nr._release(nr.installed_executorch_version())
    assert record["etdump"] == "ON"  # the 1.5.1 wheel ships libexecutorch_etdump.so
    assert nr.check_runner(runner_binary) == runner_binary
    assert nr.check_runner(runner_binary.parent) == runner_binary


@pytest.mark.parametrize("history", [[3, 7, 11], list(range(1, L + 1)), list(range(1, 36)), [49]])
def test_topk_equals_python_runtime(runner_binary, tiny_pte, history):
    out = nr.run_runner(tiny_pte, history, binary=runner_binary, warmup=1, iterations=3)
    items, scores = python_topk(tiny_pte, history)
    assert [i for i, _ in out["topk"]] == items
    np.testing.assert_allclose([s for _, s in out["topk"]], scores, rtol=1e-5, atol=1e-6)
    assert out["input"]["shape"] == [1, L] and out["input"]["truncated"] == max(0, len(history) - L)
    assert out["method"] == "forward" and out["load_ms"] > 0


@pytest.mark.slow  # a second export (about 20 s) only for this test
def test_int8_topk_equals_python_runtime(runner_binary, tiny_pte_int8):
    out = nr.run_runner(tiny_pte_int8, [9, 2, 30], binary=runner_binary, warmup=1, iterations=2)
    items, scores = python_topk(tiny_pte_int8, [9, 2, 30])
    assert [i for i, _ in out["topk"]] == items
    np.testing.assert_allclose([s for _, s in out["topk"]], scores, rtol=1e-5, atol=1e-6)


def test_times_topk_option_and_etdump(runner_binary, tiny_pte, tmp_path):
    dump = tmp_path / "run.etdp"
    out = nr.run_runner(tiny_pte, [5, 6], binary=runner_binary, warmup=2, iterations=7, topk=3, etdump_path=dump)
    assert len(out["warmup_ms"]) == 2 and len(out["iterations_ms"]) == 7 and out["executions"] == 7
    assert all(t > 0 for t in out["iterations_ms"]) and out["total_ms"] == pytest.approx(sum(out["iterations_ms"]), abs=1e-5)
    assert len(out["topk"]) == 3 and out["etdump_supported"] is True
    assert out["etdump"] == {"path": str(dump), "bytes": dump.stat().st_size} and dump.stat().st_size > 0


def test_runner_refuses_bad_input(runner_binary, tiny_pte, tmp_path):
    with pytest.raises(EasrecError, match=r"easrec_runner failed: --ids: '-1' is not an item id"):
        nr.run_runner(tiny_pte, [-1], binary=runner_binary)
    garbage = tmp_path / "garbage.pte"
    garbage.write_bytes(b"not a program" * 10)
    with pytest.raises(EasrecError, match=r"garbage.pte: easrec_runner failed: .*garbage.pte: not a loadable ExecuTorch program"):
        nr.run_runner(garbage, [1], binary=runner_binary)
    odd = tmp_path / "odd.bin"
    odd.write_bytes(b"\x01\x02\x03")
    res = subprocess.run([str(runner_binary), f"--model_path={tiny_pte}", f"--inputs={odd}"], capture_output=True, text=True)
    assert res.returncode == 2 and "is not a whole number of int64 ids" in res.stderr


def test_runner_built_for_another_version_is_refused(runner_binary, tmp_path, monkeypatch):
    other = tmp_path / "old"
    other.mkdir()
    shutil.copy2(runner_binary, other / nr.BINARY_NAME)
    with pytest.raises(EasrecError, match=r"no easrec_runner.build.txt beside it"):
        nr.check_runner(other)
    (other / nr.BUILD_RECORD).write_text("executorch_version=1.4.0\n")
    with pytest.raises(EasrecError, match=r"was built for ExecuTorch 1.4.0 but 1\.5\.1\S* is installed \(rebuild with"):
        nr.check_runner(other)
    # The CMake project refuses another package version itself, in one line.
    res = subprocess.run(["cmake", "-S", str(nr.SOURCE_DIR), "-B", str(tmp_path / "b"), "-DEASREC_EXECUTORCH_VERSION=1.4.0",
                          f"-DCMAKE_PREFIX_PATH={nr.executorch_package_dir()}"], capture_output=True, text=True)
    assert res.returncode != 0
    assert nr._build_error_line(res.stdout + res.stderr).startswith("easrec_runner is built for ExecuTorch 1.4.0 but found 1.5.1")


def test_build_errors_are_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(nr, "installed_executorch_version", lambda: "9.9.9")
    if shutil.which("cmake") and nr.find_compiler():
        with pytest.raises(EasrecError, match=r"^runner build: the runner is written for ExecuTorch 1.5.1 but 9.9.9 is installed"):
            nr.build_runner(tmp_path / "b")
    monkeypatch.setattr(nr.shutil, "which", lambda name: None)
    with pytest.raises(EasrecError, match=r"^runner build: cmake is not on PATH"):
        nr.build_runner(tmp_path / "b")
    monkeypatch.setattr(nr.shutil, "which", lambda name: "/usr/bin/cmake" if name == "cmake" else None)
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(EasrecError, match=r"^runner build: no C\+\+ compiler on PATH"):
        nr.build_runner(tmp_path / "b")


def test_cli_runner_build(runner_binary, capsys):
    from easrec.cli import main

    assert main(["runner", "build", "--out", str(runner_binary.parent), "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["binary"] == str(runner_binary) and obj["etdump"] is True and obj["executorch_version"].startswith("1.5.1")


@pytest.fixture
def fake_adb(tmp_path) -> Path:
    """An executable `adb` that runs tests/fake_adb.py with this interpreter."""
    adb = tmp_path / "adb"
    adb.write_text(f"#!/bin/sh\nexec {sys.executable} {TESTS / 'fake_adb.py'} \"$@\"\n")
    adb.chmod(0o755)
    return adb


def test_android_device_parses_the_real_runner(runner_binary, tiny_pte, fake_adb, tmp_path):
    from easrec.devices.android import AndroidDevice

    phone = tmp_path / "phone"
    dev = AndroidDevice("FAKE0001", runner=runner_binary, adb=str(fake_adb), remote_dir=str(phone))
    history = [4, 8, 15, 16, 23, 42]
    stats = dev.measure(tiny_pte, [padded(history)], threads=1, warmup=2, min_runs=6, max_runs=6)
    assert stats.runs == 6 and 0 < stats.p10_ms <= stats.median_ms and stats.load_ms > 0 and stats.first_ms > 0
    assert (phone / "easrec_runner").is_file() and (phone / "tiny.pte").is_file() and (phone / "input_0.bin").is_file()
    # The same run's top-k, read back through adb, equals the Python runtime's.
    parsed = dev._run_once(str(phone / "easrec_runner"), str(phone / "tiny.pte"), [str(phone / "input_0.bin")], 3, 1, "tiny.pte")
    items, scores = python_topk(tiny_pte, history)
    assert [i for i, _ in parsed["topk"]] == items and len(parsed["iterations_ms"]) == 3
    np.testing.assert_allclose([s for _, s in parsed["topk"]], scores, rtol=1e-5, atol=1e-6)
    with pytest.raises(EasrecError, match=r"android:FAKE0001: running easrec_runner on tiny.pte failed: exit status 1: .*nope.pte: cannot open"):
        dev._run_once(str(phone / "easrec_runner"), str(phone / "nope.pte"), [str(phone / "input_0.bin")], 3, 1, "tiny.pte")


def _local_ssh(cmd: list[str], *, timeout: float) -> subprocess.CompletedProcess:
    """ssh/scp replaced by this machine: `ssh ... REMOTE` runs REMOTE with /bin/sh, `scp ... SRC HOST:DST` copies."""
    if cmd[0] == "scp":
        shutil.copyfile(cmd[-2], cmd[-1].split(":", 1)[1])
        return subprocess.CompletedProcess(cmd, 0, "", "")
    return subprocess.run(["/bin/sh", "-c", cmd[-1]], capture_output=True, text=True, timeout=timeout)


def test_ssh_board_without_python_runs_the_native_runner(runner_binary, tiny_pte, monkeypatch):
    from easrec.devices import get_device
    from easrec.devices import base as base_mod

    monkeypatch.setattr(base_mod, "run_command", _local_ssh)
    dev = get_device("ssh:pi@board", runner=runner_binary, python="/no/python/here")
    stats = dev.measure(tiny_pte, [padded([1, 2, 3])], warmup=2, min_runs=5, max_runs=5)
    assert stats.runs == 5 and 0 < stats.p10_ms <= stats.median_ms and stats.first_ms > 0 and stats.load_ms > 0
    assert dev.last_info["runtime"] == "executorch" and dev.last_info["runtime_version"].startswith("1.5.1")
    info = dev.info()
    assert info["machine"] and info["cores"] >= 1 and info["os"].startswith("Linux") and info["python"] is None
    with pytest.raises(EasrecError, match=r"^ssh:pi@board: measuring m.onnx failed: the native runner measures ExecuTorch .pte"):
        dev.measure(Path("m.onnx"), [padded([1])])


def test_ssh_loopback_with_the_native_runner(runner_binary, tiny_pte, tmp_path):
    """Through a real sshd on 127.0.0.1 (.ci/start-sshd.sh; port EASREC_SSH_PORT, default 2222)."""
    import getpass
    import os
    import socket

    from easrec.devices import get_device

    ssh_dir = Path(os.environ.get("EASREC_SSH_DIR", Path.home() / ".easrec-ci-ssh"))
    port = int(os.environ.get("EASREC_SSH_PORT", "2222"))
    if not (ssh_dir / "client_ed25519").is_file() or shutil.which("ssh") is None:
        pytest.skip(f"no loopback ssh set-up in {ssh_dir} (run .ci/start-sshd.sh)")
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        pytest.skip(f"nothing accepts on 127.0.0.1:{port} (run .ci/start-sshd.sh)")
    dev = get_device(f"ssh:{getpass.getuser()}@127.0.0.1:{port}", identity=ssh_dir / "client_ed25519",
                     known_hosts=tmp_path / "known_hosts", runner=runner_binary, python="/no/python/here")
    stats = dev.measure(tiny_pte, [padded([4, 5])], warmup=2, min_runs=5, max_runs=5)
    assert stats.runs == 5 and dev.last_info["runtime_version"].startswith("1.5.1")
