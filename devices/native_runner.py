"""easrec's native runner (`runner/`): build it against the installed ExecuTorch, run it, parse its output.

`build_runner()` configures and builds `runner/` with CMake against the ExecuTorch wheel's shipped
headers and libraries (`share/cmake/executorch-config.cmake`); the build records the ExecuTorch
version in `BUILD_DIR/easrec_runner.build.txt`, and `check_runner()` refuses a binary built for
another version than the one installed. `run_runner()` runs the binary on one history and returns
`parse_runner_output()`'s dict. The Android device runs the same program cross-compiled for the
phone and parses its output with the same function.

Output format 1, one record per stdout line (anything else, e.g. runtime logs merged from stderr,
is ignored):

    easrec_runner format=1 executorch=1.5.1+cpu etdump=yes threads=1
    model path=model.pte method=forward load_ms=0.744788
    input index=0 dtype=int64 shape=1x20 ids=3 padded=17 truncated=0
    warmup 1 0.475643                  (ms, one per warm-up iteration)
    iteration 1 0.064350               (ms, one per timed iteration)
    summary iterations=5 total_ms=0.312937 median_ms=0.061987 min_ms=0.060093
    topk rank=1 item=49 score=3.02263427
    etdump path=t.etdp bytes=43104     (only with --etdump_path)
    done
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from easrec.devices.timing import LatencyStats, is_stable, summarize
from easrec.errors import EasrecError
from easrec.io import package_version

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIR = REPO_ROOT / "runner"
DEFAULT_BUILD_DIR = REPO_ROOT / "build" / "runner"
BINARY_NAME = "easrec_runner"
BUILD_RECORD = "easrec_runner.build.txt"
FORMAT_VERSION = 1

_HEADER_RE = re.compile(r"^easrec_runner format=(\d+) executorch=(\S+) etdump=(yes|no) threads=(\d+)")
_MODEL_RE = re.compile(r"^model path=(.*) method=(\S+) load_ms=([0-9.eE+-]+)$")
_INPUT_RE = re.compile(r"^input index=(\d+) dtype=(\S+) shape=(\S+) ids=(\d+) padded=(\d+) truncated=(\d+)$")
_TIME_RE = re.compile(r"^(warmup|iteration) (\d+) ([0-9.eE+-]+)$")
_SUMMARY_RE = re.compile(r"^summary iterations=(\d+) total_ms=([0-9.eE+-]+) median_ms=([0-9.eE+-]+) min_ms=([0-9.eE+-]+)$")
_TOPK_RE = re.compile(r"^topk rank=(\d+) item=(-?\d+) score=(\S+)$")
_ETDUMP_RE = re.compile(r"^etdump path=(.*) bytes=(\d+)$")
_ERROR_RE = re.compile(r"^easrec_runner: error: (.*)$")


def parse_runner_output(text: str) -> dict[str, Any]:
    """The records of one easrec_runner run (see the module docstring); raises ValueError on a broken run.

    Returns {"format", "executorch", "etdump_supported", "threads", "model", "method", "load_ms",
    "input": {...}, "warmup_ms": [...], "iterations_ms": [...], "executions", "total_ms", "median_ms",
    "topk": [(item, score), ...], "etdump": {"path", "bytes"} | None, "done"}.
    """
    out: dict[str, Any] = {"format": None, "executorch": None, "etdump_supported": None, "threads": None,
                           "model": None, "method": None, "load_ms": None, "input": None, "warmup_ms": [],
                           "iterations_ms": [], "executions": None, "total_ms": None, "median_ms": None,
                           "topk": [], "etdump": None, "done": False}
    for raw in text.splitlines():
        line = raw.strip()
        if m := _TIME_RE.match(line):
            series = out["warmup_ms" if m.group(1) == "warmup" else "iterations_ms"]
            if int(m.group(2)) != len(series) + 1:
                raise ValueError(f"{m.group(1)} lines are out of order or missing (got {m.group(2)} after {len(series)})")
            series.append(float(m.group(3)))
        elif m := _TOPK_RE.match(line):
            if int(m.group(1)) != len(out["topk"]) + 1:
                raise ValueError("topk lines are out of order or missing")
            out["topk"].append((int(m.group(2)), float(m.group(3))))
        elif m := _HEADER_RE.match(line):
            out.update(format=int(m.group(1)), executorch=m.group(2), etdump_supported=m.group(3) == "yes",
                       threads=int(m.group(4)))
            if out["format"] != FORMAT_VERSION:
                raise ValueError(f"easrec_runner output format {out['format']} is not {FORMAT_VERSION} "
                                 "(runner and easrec are from different versions)")
        elif m := _MODEL_RE.match(line):
            out.update(model=m.group(1), method=m.group(2), load_ms=float(m.group(3)))
        elif m := _INPUT_RE.match(line):
            out["input"] = {"index": int(m.group(1)), "dtype": m.group(2),
                            "shape": [int(s) for s in m.group(3).split("x")], "ids": int(m.group(4)),
                            "padded": int(m.group(5)), "truncated": int(m.group(6))}
        elif m := _SUMMARY_RE.match(line):
            out.update(executions=int(m.group(1)), total_ms=float(m.group(2)), median_ms=float(m.group(3)))
        elif m := _ETDUMP_RE.match(line):
            out["etdump"] = {"path": m.group(1), "bytes": int(m.group(2))}
        elif line == "done":
            out["done"] = True
    if out["executions"] is not None and out["executions"] != len(out["iterations_ms"]):
        raise ValueError(f"the summary counts {out['executions']} iterations but {len(out['iterations_ms'])} were printed")
    return out


def runner_error(text: str) -> str | None:
    """The runner's own one-line error (`easrec_runner: error: ...`), if it printed one."""
    for line in reversed(text.splitlines()):
        if m := _ERROR_RE.match(line.strip()):
            return m.group(1)
    return None


def runner_args(binary: str, model: str, *, ids: Sequence[int] | None = None, ids_file: str | None = None,
                inputs: str | None = None, warmup: int = 10, iterations: int = 50, threads: int = 1,
                topk: int | None = None, etdump_path: str | None = None) -> list[str]:
    """The easrec_runner command line (one of ids, ids_file, inputs names the history)."""
    sources = [s for s in (ids, ids_file, inputs) if s is not None]
    if len(sources) != 1:
        raise EasrecError("easrec_runner: give exactly one of ids, ids_file, inputs")
    args = [binary, f"--model_path={model}"]
    if ids is not None:
        args.append(f"--ids={','.join(str(int(i)) for i in ids)}")
    elif ids_file is not None:
        args.append(f"--ids_file={ids_file}")
    else:
        args.append(f"--inputs={inputs}")
    args += [f"--warmup={int(warmup)}", f"--iterations={int(iterations)}", f"--threads={int(threads)}"]
    if topk is not None:
        args.append(f"--topk={int(topk)}")
    if etdump_path is not None:
        args.append(f"--etdump_path={etdump_path}")
    return args


def check_output_version(parsed: dict[str, Any], where: str) -> None:
    """Refuse a run whose runner was built with another ExecuTorch release than the one installed here."""
    built = parsed.get("executorch")
    if not built or built == "unknown":
        return
    try:
        installed = installed_executorch_version()
    except EasrecError:
        return  # no ExecuTorch here (a board driven from a lean host): nothing to compare with
    if _release(built) != _release(installed):
        raise EasrecError(f"{where}: easrec_runner was built with ExecuTorch {built} but {installed} is installed "
                          f"here, which exported the artifact (rebuild runner/ against ExecuTorch {_release(installed)})")


def measure_in_batches(run_batch: Callable[[int], dict[str, Any]], *, min_runs: int, max_runs: int,
                       max_seconds: float, rel_tol: float = 0.02) -> LatencyStats:
    """Latency from runner processes of `min_runs` timed iterations each, until stable, `max_runs` or `max_seconds`.

    `run_batch(n)` runs the runner once (its own warm-ups, then n timed iterations) and returns the
    parsed output. Every batch is a fresh process, so every batch warms up; the first warm-up of
    the first batch is the reported first (cold) run.
    """
    samples: list[float] = []
    first_ms = load_ms = None
    t0 = time.perf_counter()
    max_runs = max(1, max_runs)
    while len(samples) < max_runs:
        parsed = run_batch(min(max(1, min_runs), max_runs - len(samples)))
        if first_ms is None:
            first_ms = (parsed["warmup_ms"] or parsed["iterations_ms"])[0]
            load_ms = parsed["load_ms"]
        samples.extend(parsed["iterations_ms"])
        if is_stable(samples, rel_tol) or time.perf_counter() - t0 >= max_seconds:
            break
    return summarize(samples, len(samples), load_ms, first_ms)


# -- building ----------------------------------------------------------------------------------

def executorch_package_dir() -> Path:
    """The installed executorch package folder (holds include/, lib/, share/cmake/), without importing it."""
    spec = importlib.util.find_spec("executorch")
    if spec is None or not spec.submodule_search_locations:
        raise EasrecError("native runner: executorch is not installed in this Python (pip install executorch)")
    return Path(list(spec.submodule_search_locations)[0])


def installed_executorch_version() -> str:
    """The installed executorch distribution's version, e.g. '1.5.1'."""
    found = package_version("executorch")
    if found is None:
        raise EasrecError("native runner: executorch is not installed in this Python (pip install executorch)")
    return found


def target_executorch_version(source_dir: Path = SOURCE_DIR) -> str:
    """The ExecuTorch release the runner source is written for (EASREC_EXECUTORCH_VERSION in CMakeLists.txt)."""
    cmakelists = source_dir / "CMakeLists.txt"
    try:
        text = cmakelists.read_text(encoding="utf-8")
    except OSError as exc:
        raise EasrecError(f"{cmakelists}: cannot read the runner's CMakeLists.txt ({exc.strerror})") from exc
    m = re.search(r'set\(EASREC_EXECUTORCH_VERSION "([^"]+)"', text)
    if not m:
        raise EasrecError(f"{cmakelists}: no EASREC_EXECUTORCH_VERSION")
    return m.group(1)


def _release(version: str) -> str:
    """'1.5.1+cpu' -> '1.5.1' (local labels and pre-release tags do not change the runtime API)."""
    m = re.match(r"\d+(\.\d+)*", version)
    return m.group(0) if m else version


def find_compiler() -> str | None:
    """The C++ compiler CMake would pick: $CXX, else c++, g++ or clang++ on PATH."""
    cxx = os.environ.get("CXX")
    if cxx:
        return shutil.which(cxx.split()[0])
    return next((p for p in map(shutil.which, ("c++", "g++", "clang++")) if p), None)


def build_runner(out: str | Path | None = None, *, jobs: int = 2, source_dir: Path = SOURCE_DIR,
                 timeout: float = 900.0) -> Path:
    """Configure and build easrec_runner in `out` (default build/runner); return the binary's path."""
    out = Path(out) if out is not None else DEFAULT_BUILD_DIR
    cmake = shutil.which("cmake")
    if cmake is None:
        raise EasrecError("runner build: cmake is not on PATH (install cmake >= 3.24, e.g. apt-get install cmake)")
    cxx = find_compiler()
    if cxx is None:
        raise EasrecError("runner build: no C++ compiler on PATH (install g++ or clang++, or set CXX)")
    installed, wanted = installed_executorch_version(), target_executorch_version(source_dir)
    if _release(installed) != _release(wanted):
        raise EasrecError(f"runner build: the runner is written for ExecuTorch {wanted} but {installed} is "
                          f"installed (install executorch=={wanted}, or port runner/ and change EASREC_EXECUTORCH_VERSION)")
    package = executorch_package_dir()
    out.mkdir(parents=True, exist_ok=True)
    configure = [cmake, "-S", str(source_dir), "-B", str(out), "-DCMAKE_BUILD_TYPE=Release",
                 f"-DCMAKE_PREFIX_PATH={package}", f"-DCMAKE_CXX_COMPILER={cxx}"]
    if shutil.which("ninja") and not (out / "CMakeCache.txt").exists():
        configure += ["-G", "Ninja"]
    # The wheel's config asks `python3` for the extension suffix: make it this interpreter's.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    _run_build_step(configure, "configuring", env, timeout)
    _run_build_step([cmake, "--build", str(out), "-j", str(max(1, int(jobs)))], "compiling", env, timeout)
    binary = out / BINARY_NAME
    if not binary.is_file():
        raise EasrecError(f"runner build: the build finished but {binary} is missing")
    record = read_build_record(out)
    log.info("built %s against ExecuTorch %s (ETDump %s)", binary, record.get("executorch_version"), record.get("etdump"))
    return binary


def _run_build_step(cmd: list[str], step: str, env: dict[str, str], timeout: float) -> None:
    log.info("runner build: %s", shlex.join(cmd))
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise EasrecError(f"runner build: {step} timed out after {timeout:.0f} s") from None
    log.debug("%s", res.stdout + res.stderr)
    if res.returncode != 0:
        raise EasrecError(f"runner build: {step} failed: {_build_error_line(res.stdout + res.stderr)}")


def _build_error_line(text: str) -> str:
    """The most telling line of a failed CMake or compiler run (CMake's message follows 'CMake Error')."""
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    for k, line in enumerate(lines):
        if line.startswith("CMake Error") and k + 1 < len(lines):
            return lines[k + 1]
    for line in lines:
        if "error:" in line or "undefined reference" in line:
            return line
    return lines[-1] if lines else "no output"


def read_build_record(build_dir: str | Path) -> dict[str, str]:
    """The key=value lines CMake wrote to BUILD_DIR/easrec_runner.build.txt ({} when absent)."""
    path = Path(build_dir) / BUILD_RECORD
    if not path.is_file():
        return {}
    record = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            record[key.strip()] = value.strip()
    return record


def check_runner(binary: str | Path | None = None) -> Path:
    """The runner binary, after checking it was built for the installed ExecuTorch (one-line error if not)."""
    binary = Path(binary) if binary is not None else DEFAULT_BUILD_DIR / BINARY_NAME
    if binary.is_dir():
        binary = binary / BINARY_NAME
    if not binary.is_file():
        raise EasrecError(f"{binary}: no easrec_runner here (build it with `easrec runner build` or `make runner`)")
    record = read_build_record(binary.parent)
    built = record.get("executorch_version")
    if not built:
        raise EasrecError(f"{binary}: no {BUILD_RECORD} beside it, so its ExecuTorch version is unknown "
                          "(rebuild with `easrec runner build`)")
    installed = installed_executorch_version()
    if _release(built) != _release(installed):
        raise EasrecError(f"{binary} was built for ExecuTorch {built} but {installed} is installed "
                          "(rebuild with `easrec runner build`)")
    return binary


def run_runner(model: str | Path, ids: Sequence[int], *, binary: str | Path | None = None, warmup: int = 10,
               iterations: int = 50, threads: int = 1, topk: int | None = None, etdump_path: str | Path | None = None,
               timeout: float = 600.0) -> dict[str, Any]:
    """Run the checked local binary on one history of item indices; the parsed output (`parse_runner_output`)."""
    exe = check_runner(binary)
    model = Path(model)
    if not model.is_file():
        raise EasrecError(f"{model}: no such file")
    cmd = runner_args(str(exe), str(model), ids=list(ids), warmup=warmup, iterations=iterations, threads=threads,
                      topk=topk, etdump_path=str(etdump_path) if etdump_path is not None else None)
    log.debug("%s", shlex.join(cmd))
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise EasrecError(f"{model.name}: easrec_runner timed out after {timeout:.0f} s") from None
    if res.returncode != 0:
        why = runner_error(res.stderr) or (res.stderr.strip().splitlines() or [f"exit status {res.returncode}"])[-1]
        raise EasrecError(f"{model.name}: easrec_runner failed: {why}")
    try:
        parsed = parse_runner_output(res.stdout)
    except ValueError as exc:
        raise EasrecError(f"{model.name}: easrec_runner output: {exc}") from exc
    if not parsed["done"]:
        raise EasrecError(f"{model.name}: easrec_runner stopped before printing its results")
    return parsed
