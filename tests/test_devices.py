"""Tests of easrec.devices: timing loop, spec parsing, the three runners on a real tiny model,
the cpu device, android over a faked adb (and a real phone when one is attached), ssh over a
loopback sshd started by .ci/start-sshd.sh, and the on-device JSON entry point."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from easrec.devices import LatencyStats, get_device, load_runner, parse_spec, summarize, time_callable
from easrec.devices import android as android_mod
from easrec.devices import base as base_mod
from easrec.devices.android import AndroidDevice, parse_executor_runner_output
from easrec.devices.base import parse_adb_devices
from easrec.devices.timing import MeasurePolicy, is_stable
from easrec.errors import EasrecError

DATA = Path(__file__).parent / "data"
SEQ = 8
VOCAB = 50


# --------------------------------------------------------------------------------------------
# timing
class FakeClock:
    """A clock that only moves when the timed function runs, by the next scripted duration (ms)."""

    def __init__(self, durations_ms):
        self.t = 100.0
        self.durations = iter(durations_ms)
        self.calls = 0

    def __call__(self):
        return self.t

    def fn(self):
        self.calls += 1
        self.t += next(self.durations) / 1e3


def test_time_callable_excludes_warmup_and_stops_at_min_runs_when_flat():
    clock = FakeClock([50.0, 9.0, 9.0] + [2.0] * 1000)
    stats = time_callable(clock.fn, warmup=3, min_runs=12, max_runs=100, clock=clock)
    assert clock.calls == 3 + 12
    assert stats.runs == 12 and len(stats.samples_ms) == 12
    assert stats.samples_ms == pytest.approx([2.0] * 12)  # no warm-up sample leaked in
    assert stats.first_ms == pytest.approx(50.0)
    assert stats.median_ms == pytest.approx(2.0) and stats.std_ms == pytest.approx(0.0)


def test_time_callable_stops_on_first_stable_point():
    # Slow start that settles: the stop must be the first run >= min_runs where the median of the
    # last half is within rel_tol of the whole.
    durations = [10.0 - 0.5 * i for i in range(16)] + [2.0 + 0.01 * (i % 3) for i in range(500)]
    clock = FakeClock(durations)
    stats = time_callable(clock.fn, warmup=0, min_runs=5, max_runs=400, rel_tol=0.02, clock=clock)
    n = stats.runs
    assert 5 <= n < 400
    assert stats.samples_ms == pytest.approx(durations[:n])
    assert is_stable(durations[:n], 0.02)
    assert not any(is_stable(durations[:k], 0.02) for k in range(5, n))


def test_time_callable_respects_max_runs_and_max_seconds():
    rising = [1.0 + i for i in range(1000)]  # the median never settles
    clock = FakeClock(rising)
    stats = time_callable(clock.fn, warmup=2, min_runs=5, max_runs=40, max_seconds=1e9, clock=clock)
    assert stats.runs == 40 and clock.calls == 42
    clock = FakeClock([125.0] * 1000)  # 125 ms per run, 1 s budget: stops at 8 runs, before min/max_runs
    stats = time_callable(clock.fn, warmup=0, min_runs=50, max_runs=200, max_seconds=1.0, clock=clock)
    assert stats.runs == 8


def test_stats_match_numpy_percentiles_and_roundtrip():
    rng = np.random.default_rng(0)
    samples = list(rng.lognormal(0.0, 0.3, size=77))
    st = summarize(samples, 77, load_ms=12.5, first_ms=3.0)
    assert st.median_ms == pytest.approx(np.percentile(samples, 50))
    assert st.p10_ms == pytest.approx(np.percentile(samples, 10))
    assert st.p90_ms == pytest.approx(np.percentile(samples, 90))
    assert st.mean_ms == pytest.approx(np.mean(samples))
    assert st.std_ms == pytest.approx(np.std(samples, ddof=1))
    back = LatencyStats.from_dict(json.loads(json.dumps(st.to_dict())))
    assert back == st
    with pytest.raises(EasrecError, match="median_ms"):
        LatencyStats.from_dict({"runs": 3})
    with pytest.raises(EasrecError):
        summarize([])


# --------------------------------------------------------------------------------------------
# spec parsing
def test_get_device_parses_specs():
    d = get_device("cpu")
    assert (d.kind, d.name, d.threads) == ("cpu", "cpu", 1)
    d = get_device("cpu:4")
    assert (d.name, d.threads) == ("cpu:4", 4)
    assert get_device("cuda").index == 0 and get_device("cuda:1").name == "cuda:1"
    a = get_device("android:emulator-5554", runner="/x/executor_runner")
    assert a.serial == "emulator-5554" and a.name == "android:emulator-5554"
    s = get_device("ssh:pi@10.0.0.5:2200", identity="/k")
    assert (s.user, s.host, s.port, s.name) == ("pi", "10.0.0.5", 2200, "ssh:pi@10.0.0.5:2200")
    s = get_device("ssh:pi@board")
    assert (s.user, s.host, s.port) == ("pi", "board", None)
    assert parse_spec("ssh:[::1]:22") == ("ssh", {"user": None, "host": "::1", "port": 22})


@pytest.mark.parametrize(
    "spec, fragment",
    [("tpu", "unknown kind 'tpu'"), ("gpu:0", "unknown kind"), ("", "empty"), ("cpu:x", "thread count"),
     ("cpu:0", "thread count"), ("cuda:a", "GPU index"), ("android:", "SERIAL"), ("ssh:", "USER@HOST"),
     ("ssh:pi@host:99999", "out of range")],
)
def test_get_device_rejects_bad_specs(spec, fragment):
    with pytest.raises(EasrecError, match="device spec") as exc:
        get_device(spec)
    assert fragment in str(exc.value)


def test_get_device_takes_threads_for_every_kind():
    assert get_device("cpu", threads=3).threads == 3 and get_device("cpu", threads=3).name == "cpu:3"
    assert get_device("cpu:4", threads=4).threads == 4
    assert get_device("cuda:0", threads=2).threads == 2
    assert get_device("android:R58M12", threads=4, runner="/x/executor_runner").threads == 4
    assert get_device("ssh:pi@board", threads=2).threads == 2
    assert get_device("ssh:pi@board").threads == 1  # a measurement default every kind carries


@pytest.mark.parametrize(
    "spec, options, fragment",
    [("cpu", {"runner": "/x"}, "cpu devices do not take option(s) runner"),
     ("cuda", {"cores": [0]}, "cuda devices do not take option(s) cores"),
     ("ssh:pi@board", {"adb": "/x"}, "ssh devices do not take option(s) adb"),
     ("android:R58", {"identity": "/k"}, "android devices do not take option(s) identity"),
     ("cpu:4", {"threads": 2}, "says 4 thread(s) but threads=2"),
     ("cuda", {"threads": 0}, "threads must be a positive integer"),
     ("ssh:pi@board", {"threads": "2"}, "threads must be a positive integer")],
)
def test_get_device_refuses_options_a_kind_does_not_take(spec, options, fragment):
    with pytest.raises(EasrecError) as exc:  # an EasrecError naming the option, never a TypeError
        get_device(spec, **options)
    assert fragment in str(exc.value)
    assert len(str(exc.value).splitlines()) == 1


def test_parse_adb_devices_listing():
    text = ("List of devices attached\n"
            "R58M12ABCDE            device usb:1-1 product:a52qnsxx model:SM_A525F device:a52q transport_id:3\n"
            "emulator-5554          offline\n\n")
    devs = parse_adb_devices(text)
    assert [d["serial"] for d in devs] == ["R58M12ABCDE", "emulator-5554"]
    assert devs[0]["name"] == "SM_A525F" and devs[0]["status"] == "device" and devs[1]["status"] == "offline"


# --------------------------------------------------------------------------------------------
# runners on a real tiny model
@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    torch = pytest.importorskip("torch")

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(VOCAB, 16, padding_idx=0)
            self.lin = torch.nn.Linear(16, 12)

        def forward(self, ids):
            return self.lin(torch.tanh(self.emb(ids)).mean(dim=1))

    torch.manual_seed(0)
    model = Tiny().eval()
    ids = np.array([[0, 0, 3, 17, 5, 42, 9, 1]], dtype=np.int64)
    example = (torch.from_numpy(ids),)
    with torch.no_grad():
        eager = model(*example).numpy()
    out = tmp_path_factory.mktemp("artifacts")
    ep = torch.export.export(model, example)
    torch.export.save(ep, str(out / "tiny.pt2"))
    paths = {"pt2": out / "tiny.pt2"}
    try:
        torch.onnx.export(model, example, str(out / "tiny.onnx"), dynamo=True, external_data=False,
                          input_names=["ids"], output_names=["scores"])
        paths["onnx"] = out / "tiny.onnx"
    except Exception as exc:  # pragma: no cover - reported by the test that needs it
        paths["onnx_error"] = repr(exc)
    try:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

        prog = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).to_executorch()
        (out / "tiny.pte").write_bytes(prog.buffer)
        paths["pte"] = out / "tiny.pte"
    except ImportError as exc:  # pragma: no cover
        paths["pte_error"] = repr(exc)
    return {"paths": paths, "ids": ids, "eager": eager}


@pytest.mark.parametrize("kind, runtime", [("pt2", "torch"), ("onnx", "onnxruntime"), ("pte", "executorch")])
def test_runners_match_eager_and_check_dtype(artifacts, kind, runtime):
    path = artifacts["paths"].get(kind)
    assert path is not None, artifacts["paths"].get(f"{kind}_error")
    runner = load_runner(path, threads=1)
    assert runner.runtime == runtime and runner.runtime_version and runner.load_ms > 0
    out = runner.run([artifacts["ids"]])
    assert len(out) == 1
    np.testing.assert_allclose(out[0], artifacts["eager"], rtol=1e-4, atol=1e-5)
    with pytest.raises(EasrecError, match="int64") as exc:
        runner.run([artifacts["ids"].astype(np.float32)])
    assert path.name in str(exc.value)


def test_load_runner_rejects_unknown_and_missing(tmp_path):
    (tmp_path / "m.tflite").write_bytes(b"x")
    with pytest.raises(EasrecError, match="unknown artifact type"):
        load_runner(tmp_path / "m.tflite")
    with pytest.raises(EasrecError, match="no such file"):
        load_runner(tmp_path / "absent.pte")


@pytest.mark.parametrize("kind", ["pte", "onnx", "pt2"])
def test_cpu_device_measures(artifacts, kind):
    dev = get_device("cpu:1")
    stats = dev.measure(artifacts["paths"][kind], [artifacts["ids"]], warmup=3, min_runs=20, max_runs=60, max_seconds=5)
    assert stats.runs >= 20 and len(stats.samples_ms) == stats.runs
    assert 0 < stats.p10_ms <= stats.median_ms <= stats.p90_ms
    assert stats.load_ms is not None and stats.load_ms > 0 and stats.first_ms > 0
    info = dev.info()
    for key in ("kind", "cpu", "cores", "threads", "os", "machine", "python"):
        assert key in info
    assert info["threads"] == 1


def test_cpu_device_pins_cores_and_restores(artifacts):
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no sched_setaffinity on this OS")
    before = os.sched_getaffinity(0)
    core = min(before)
    dev = get_device("cpu", cores=[core])
    seen = []
    with dev.pinned():
        seen = os.sched_getaffinity(0)
    assert seen == {core} and os.sched_getaffinity(0) == before
    with pytest.raises(EasrecError, match="pinning cores"):
        get_device("cpu", cores=[10_000])


def test_cuda_refuses_pte(artifacts):
    dev = get_device("cuda")
    with pytest.raises(EasrecError, match=r"cuda:0: measuring tiny.pte failed: .pte"):
        dev.measure(artifacts["paths"]["pte"], [artifacts["ids"]])


def test_cuda_errors_name_device_and_step(artifacts):
    import onnxruntime as ort
    import torch

    dev = get_device("cuda:0")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(EasrecError, match=r"^cuda:0: tiny.onnx: loading with onnxruntime failed: CUDAExecutionProvider"):
            dev.measure(artifacts["paths"]["onnx"], [artifacts["ids"]])
    if not torch.cuda.is_available():
        with pytest.raises(EasrecError, match=r"^cuda:0: initialising failed: .*no CUDA GPU"):
            dev.measure(artifacts["paths"]["pt2"], [artifacts["ids"]])
    else:  # pragma: no cover - runs on a GPU machine
        stats = dev.measure(artifacts["paths"]["pt2"], [artifacts["ids"]], warmup=3, min_runs=10, max_runs=30)
        assert 0 < stats.p10_ms <= stats.median_ms <= stats.p90_ms and dev.info()["gpu"]


def test_cpu_device_errors_name_device(artifacts):
    with pytest.raises(EasrecError, match=r"^cpu:2: tiny.pte: running with executorch failed: input 0 has dtype float32, expected int64"):
        get_device("cpu:2").measure(artifacts["paths"]["pte"], [artifacts["ids"].astype(np.float32)], warmup=1, min_runs=2)


def test_import_needs_no_runtime_and_cuda_machine_without_executorch(tmp_path):
    # A CUDA box with its own torch and no ExecuTorch must import the package and build a cuda device.
    code = (
        "import sys; sys.modules['executorch'] = None\n"
        "import easrec.devices as d\n"
        "assert not {'torch', 'onnxruntime'} & set(sys.modules), sorted(sys.modules)\n"
        "dev = d.get_device('cuda:0'); assert dev.name == 'cuda:0'\n"
        "assert d.list_devices()[0]['kind'] == 'cpu'\n"
        "try:\n    d.load_runner(sys.argv[1])\nexcept d.base.EasrecError as e:\n    print(e)\n"
    )
    pte = tmp_path / "m.pte"
    pte.write_bytes(b"not really")
    out = subprocess.run([sys.executable, "-c", code, str(pte)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "m.pte: loading with executorch failed: executorch is not installed" in out.stdout


def test_cuda_event_timing_with_fake_torch(monkeypatch, tmp_path):
    """The CUDA-event loop (no GPU here): warm-up excluded, first run kept apart, stats from events."""
    import contextlib
    import types

    from easrec.devices.cuda import CudaDevice

    durations = iter([30.0, 5.0] + [1.0] * 500)
    synced = []

    class Event:
        def __init__(self, enable_timing):
            assert enable_timing

        def record(self):
            pass

        def synchronize(self):
            pass

        def elapsed_time(self, other):
            return self.ms

    class Runner:
        def call(self, prepared):
            Event.ms = next(durations)

    cuda = types.SimpleNamespace(Event=Event, synchronize=lambda i=None: synced.append(i),
                                 device=lambda i: contextlib.nullcontext())
    fake_torch = types.SimpleNamespace(cuda=cuda)
    policy = MeasurePolicy(warmup=2, min_runs=10, max_runs=50, max_seconds=60)
    stats = CudaDevice(0)._time_events(fake_torch, Runner(), None, policy)
    assert stats.first_ms == 30.0 and stats.runs == 10 and stats.samples_ms == [1.0] * 10
    assert len(synced) == 12  # synchronize before every timed and warm-up run


def test_cli_devices_json(capsys):
    from easrec.cli import main

    assert main(["devices", "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["devices"][0]["spec"] == "cpu" and obj["devices"][0]["kind"] == "cpu"


@pytest.mark.slow
def test_remote_entry_point_prints_one_json_object(artifacts, tmp_path):
    from easrec.devices.remote import save_inputs

    npz = tmp_path / "inputs.npz"
    save_inputs(npz, [artifacts["ids"]])
    cmd = [sys.executable, "-m", "easrec.devices.remote", "measure", "--artifact", str(artifacts["paths"]["pte"]),
           "--inputs", str(npz), "--warmup", "2", "--min-runs", "10", "--max-runs", "20"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1
    obj = json.loads(lines[0])
    assert set(obj) == {"info", "stats"} and obj["info"]["runtime"] == "executorch"
    assert LatencyStats.from_dict(obj["stats"]).runs >= 10
    bad = subprocess.run(cmd[:5] + [str(tmp_path / "nope.pte")] + cmd[6:], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "no such file" in json.loads(bad.stdout)["error"]


# --------------------------------------------------------------------------------------------
# android over a faked adb
RECORDED = (DATA / "executor_runner_posix.txt").read_text()
RECORDED_LOGCAT = (DATA / "executor_runner_logcat.txt").read_text()
RECORDED_ITERS = [4.912344, 1.873021, 1.402117, 1.398652, 1.391208, 1.335907, 1.322068, 1.362075, 1.315795,
                  1.352871, 1.339255, 1.31464, 1.350595, 1.313, 1.344692]
# easrec_runner's real output (runner/, built here; 5 warm-up + 10 timed iterations, stderr merged as on the phone).
RUNNER_OUT = (DATA / "easrec_runner_posix.txt").read_text()
RUNNER_ITERS = [0.019807, 0.019376, 0.019176, 0.019186, 0.019075, 0.019026, 0.039574, 0.019717, 4.119201, 0.28774]


def test_parse_recorded_executor_runner_output():
    parsed = parse_executor_runner_output(RECORDED, 15)
    assert parsed["iterations_ms"] == pytest.approx(RECORDED_ITERS)
    assert parsed["load_ms"] == pytest.approx(3.21875)
    assert parsed["executions"] == 15 and parsed["total_ms"] == pytest.approx(sum(RECORDED_ITERS), abs=1e-4)
    lc = parse_executor_runner_output(RECORDED_LOGCAT, 8)  # the older 3-run block is ignored
    assert len(lc["iterations_ms"]) == 8 and lc["iterations_ms"][0] == pytest.approx(6.021875)


def test_parse_recorded_easrec_runner_output():
    parsed = parse_executor_runner_output(RUNNER_OUT, 10)
    assert parsed["iterations_ms"] == pytest.approx(RUNNER_ITERS) and len(parsed["warmup_ms"]) == 5
    assert parsed["load_ms"] == pytest.approx(0.581972) and parsed["executions"] == 10
    assert parsed["total_ms"] == pytest.approx(sum(RUNNER_ITERS), abs=1e-5)
    assert parsed["topk"][0] == (45, pytest.approx(2.94300985)) and len(parsed["topk"]) == 10
    with pytest.raises(ValueError, match="out of order"):
        parse_executor_runner_output(RUNNER_OUT.replace("iteration 3 ", "iteration 4 "), 10)


class FakeAdb:
    """Records every command line; answers from a list of (predicate, CompletedProcess-args)."""

    def __init__(self, answers):
        self.commands = []
        self.answers = answers

    def __call__(self, cmd, *, timeout):
        self.commands.append(list(cmd))
        line = " ".join(cmd)
        for match, (rc, stdout, stderr) in self.answers:
            if match in line:
                return subprocess.CompletedProcess(cmd, rc, stdout, stderr)
        return subprocess.CompletedProcess(cmd, 0, "", "")


@pytest.fixture
def phone_files(tmp_path):
    model = tmp_path / "model.pte"
    model.write_bytes(b"PTE")
    runner = tmp_path / "easrec_runner"
    runner.write_bytes(b"\x7fELF")
    return model, runner


def test_android_measure_builds_exact_adb_commands(monkeypatch, phone_files):
    model, runner = phone_files
    fake = FakeAdb([("easrec_runner --model_path", (0, RUNNER_OUT, ""))])
    monkeypatch.setattr(base_mod, "run_command", fake)
    dev = get_device("android:R58M12", runner=runner, adb="adb")
    ids = np.arange(8, dtype=np.int64).reshape(1, 8)
    stats = dev.measure(model, [ids], threads=4, warmup=5, min_runs=10, max_runs=10)
    d = "/data/local/tmp/easrec"
    s = ["adb", "-s", "R58M12"]
    assert fake.commands[0] == s + ["shell", f"mkdir -p {d}"]
    assert fake.commands[1] == s + ["push", str(runner), f"{d}/easrec_runner"]
    assert fake.commands[2] == s + ["shell", f"chmod 755 {d}/easrec_runner"]
    assert fake.commands[4] == s + ["push", str(model), f"{d}/model.pte"]
    assert fake.commands[6][:4] == s + ["push"] and fake.commands[6][4].endswith("input_0.bin")
    assert fake.commands[6][5] == f"{d}/input_0.bin"
    assert fake.commands[-1] == s + ["shell", f"cd {d} && {d}/easrec_runner --model_path={d}/model.pte "
                                     f"--inputs={d}/input_0.bin --warmup=5 --iterations=10 --threads=4 2>&1"]
    assert len(fake.commands) == 8
    assert stats.runs == 10 and stats.samples_ms == pytest.approx(RUNNER_ITERS)
    assert stats.first_ms == pytest.approx(0.582063) and stats.load_ms == pytest.approx(0.581972)
    assert stats.median_ms == pytest.approx(np.median(RUNNER_ITERS))


def test_android_inputs_are_raw_little_endian_int64(monkeypatch, phone_files, tmp_path):
    pushed = {}

    def fake(cmd, *, timeout):
        if cmd[3] == "push" and cmd[4].endswith(".bin"):
            pushed[cmd[5]] = Path(cmd[4]).read_bytes()
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(base_mod, "run_command", fake)
    dev = AndroidDevice("S1", runner=phone_files[1], adb="adb")
    ids = np.array([[0, 1, 2, 300]], dtype=np.int64)
    assert dev.push_inputs([ids]) == ["/data/local/tmp/easrec/input_0.bin"]
    assert np.frombuffer(pushed["/data/local/tmp/easrec/input_0.bin"], dtype="<i8").tolist() == [0, 1, 2, 300]
    with pytest.raises(EasrecError, match="android:S1: writing inputs failed: .*int64"):
        dev.push_inputs([ids.astype(np.float32)])


def test_android_info_reads_properties(monkeypatch):
    fake = FakeAdb([("ro.product.model", (0, "Pixel 7\n", "")), ("ro.build.version.release", (0, "14\n", "")),
                    ("ro.product.cpu.abi", (0, "arm64-v8a\n", "")), ("scaling_governor", (0, "schedutil\n", ""))])
    monkeypatch.setattr(base_mod, "run_command", fake)
    info = AndroidDevice("S1", adb="adb").info()
    assert info["model"] == "Pixel 7" and info["os"] == "Android 14" and info["governor"] == "schedutil"
    assert ["adb", "-s", "S1", "shell", "getprop ro.product.model"] in fake.commands
    assert ["adb", "-s", "S1", "shell", "cat /sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"] in fake.commands


def test_android_vanished_device_and_crash(monkeypatch, phone_files):
    model, runner = phone_files
    gone = FakeAdb([("push", (1, "", "adb: device 'R58M12' not found\n"))])
    monkeypatch.setattr(base_mod, "run_command", gone)
    dev = AndroidDevice("R58M12", runner=runner, adb="adb")
    with pytest.raises(EasrecError, match=r"^android:R58M12: copying easrec_runner failed: .*not found"):
        dev.measure(model, [np.zeros((1, 8), np.int64)])
    crash = FakeAdb([("easrec_runner --model_path", (134, "I 00:00:00.000100 executorch:method.cpp:318] x\n"
                                                          "Aborted \n", ""))])
    monkeypatch.setattr(base_mod, "run_command", crash)
    with pytest.raises(EasrecError, match=r"^android:R58M12: running easrec_runner on model.pte failed: exit status 134: Aborted"):
        dev.measure(model, [np.zeros((1, 8), np.int64)])
    refused = FakeAdb([("easrec_runner --model_path", (1, "easrec_runner: error: model.pte: cannot open: AccessFailed (0x22)\n", ""))])
    monkeypatch.setattr(base_mod, "run_command", refused)
    with pytest.raises(EasrecError, match=r"exit status 1: model.pte: cannot open: AccessFailed"):
        dev.measure(model, [np.zeros((1, 8), np.int64)])
    short = FakeAdb([("easrec_runner --model_path", (0, RUNNER_OUT, ""))])  # asks 12, gets 10
    monkeypatch.setattr(base_mod, "run_command", short)
    with pytest.raises(EasrecError, match="found 10 of 12 iteration times"):
        dev.measure(model, [np.zeros((1, 8), np.int64)], warmup=2, min_runs=12, max_runs=12)


def test_android_missing_runner_and_missing_adb(monkeypatch, phone_files):
    model, _ = phone_files
    monkeypatch.setattr(base_mod, "run_command", FakeAdb([]))
    with pytest.raises(EasrecError, match="android:S1: copying easrec_runner failed: no runner given"):
        AndroidDevice("S1", adb="adb").measure(model, [np.zeros((1, 8), np.int64)])
    monkeypatch.setattr(android_mod.shutil, "which", lambda name: None)
    with pytest.raises(EasrecError, match="android:S1: .* failed: `adb` is not on PATH"):
        AndroidDevice("S1", runner=phone_files[1]).measure(model, [np.zeros((1, 8), np.int64)])


def _attached_android():
    adb = shutil.which("adb")
    if not adb:
        return None, "adb is not on PATH"
    try:
        out = subprocess.run([adb, "devices"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"`adb devices` failed: {exc}"
    serials = [d["serial"] for d in parse_adb_devices(out.stdout) if d["status"] == "device"]
    if not serials:
        return None, "`adb devices` lists no attached device"
    return serials[0], ""


def test_android_real_device(artifacts):
    serial, why = _attached_android()
    if serial is None:
        pytest.skip(f"no Android device: {why}")
    runner = os.environ.get("EASREC_ANDROID_RUNNER")
    dev = get_device(f"android:{serial}", runner=runner)
    info = dev.info()
    assert info["model"] and info["os"].startswith("Android")
    if not runner:
        pytest.skip("info() ran on the phone; set EASREC_ANDROID_RUNNER to easrec_runner cross-compiled for it to measure")
    stats = dev.measure(artifacts["paths"]["pte"], [artifacts["ids"]], warmup=5, min_runs=20, max_runs=20)
    assert stats.runs == 20 and 0 < stats.p10_ms <= stats.median_ms <= stats.p90_ms


# --------------------------------------------------------------------------------------------
# ssh
SSH_DIR = Path(os.environ.get("EASREC_SSH_DIR", Path.home() / ".easrec-ci-ssh"))
SSH_PORT = 2222


def _sshd_ready() -> str:
    if not (SSH_DIR / "client_ed25519").is_file():
        return f"no client key in {SSH_DIR} (run .ci/start-sshd.sh)"
    if shutil.which("ssh") is None or shutil.which("scp") is None:
        return "ssh/scp not installed"
    try:
        with socket.create_connection(("127.0.0.1", SSH_PORT), timeout=2):
            return ""
    except OSError:
        return f"nothing accepts on 127.0.0.1:{SSH_PORT} (run .ci/start-sshd.sh)"


def _user() -> str:
    import getpass

    return getpass.getuser()


def test_ssh_command_lines():
    dev = get_device("ssh:pi@10.0.0.5:2200", identity="/keys/id", python="/opt/venv/bin/python")
    cmd = dev.ssh_command("echo hi")
    assert cmd[0] == "ssh" and cmd[-2:] == ["pi@10.0.0.5", "echo hi"]
    for opt in ("BatchMode=yes", "StrictHostKeyChecking=accept-new", "IdentitiesOnly=yes"):
        assert opt in cmd
    assert cmd[cmd.index("-i") + 1] == "/keys/id" and cmd[cmd.index("-p") + 1] == "2200"
    scp = dev.scp_command(Path("/a/model.pte"), "/tmp/easrec.x/model.pte")
    assert scp[0] == "scp" and scp[scp.index("-P") + 1] == "2200" and scp[-1] == "pi@10.0.0.5:/tmp/easrec.x/model.pte"


def test_ssh_remote_error_is_reported(monkeypatch):
    def fake(cmd, *, timeout):
        if cmd[0] == "ssh" and "mktemp" in cmd[-1]:
            return subprocess.CompletedProcess(cmd, 0, "/tmp/easrec.abc\n", "")
        if cmd[0] == "ssh" and "easrec.devices.remote" in cmd[-1]:
            return subprocess.CompletedProcess(cmd, 2, '{"error": "m.pte: loading with executorch failed: bad"}\n', "")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(base_mod, "run_command", fake)
    dev = get_device("ssh:pi@board")
    with pytest.raises(EasrecError, match=r"^ssh:pi@board: reading info failed: m.pte: loading"):
        dev.info()


@pytest.mark.slow
def test_ssh_loopback_measure(artifacts, tmp_path):
    why = _sshd_ready()
    if why:
        pytest.skip(f"loopback sshd not available: {why}")
    dev = get_device(f"ssh:{_user()}@127.0.0.1:{SSH_PORT}", identity=SSH_DIR / "client_ed25519",
                     python=sys.executable, known_hosts=tmp_path / "known_hosts")
    stats = dev.measure(artifacts["paths"]["pte"], [artifacts["ids"]], warmup=2, min_runs=10, max_runs=30)
    assert isinstance(stats, LatencyStats) and 10 <= stats.runs <= 30
    assert 0 < stats.p10_ms <= stats.median_ms <= stats.p90_ms and stats.load_ms > 0
    info = dev.last_info
    for key in ("kind", "cpu", "cores", "threads", "os", "machine", "python", "runtime", "runtime_version"):
        assert key in info, key
    assert info["runtime"] == "executorch" and info["spec"] == dev.name
    assert dev._remote_dir is None  # the remote temp dir was cleaned up
    remote_info = dev.info()
    assert remote_info["kind"] == "ssh" and remote_info["cpu"] == info["cpu"] and remote_info["cores"] >= 1


def test_ssh_refused_key(tmp_path):
    why = _sshd_ready()
    if why:
        pytest.skip(f"loopback sshd not available: {why}")
    key = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30)
    model = tmp_path / "model.pte"
    model.write_bytes(b"x")
    dev = get_device(f"ssh:{_user()}@127.0.0.1:{SSH_PORT}", identity=key, python=sys.executable,
                     known_hosts=tmp_path / "known_hosts")
    with pytest.raises(EasrecError, match=r"^ssh:\S+@127\.0\.0\.1:2222: connecting failed: .*Permission denied"):
        dev.measure(model, [np.zeros((1, 8), np.int64)])
