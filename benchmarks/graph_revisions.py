"""Latency of the shipped graph, lowered by two revisions of easrec, timed side by side in one process.

A change to the model code changes every exported artifact. This lowers the same SASRec shapes (the
`TopKGraph` that `easrec export` ships, seeded weights, padded ml-100k-sized ids) with the working tree
and with a base revision (checked out with `git worktree`), then loads every file in one process and
times them in interleaved rounds, in a new random order each round: per round each graph keeps its
fastest of `--runs` calls, its value is the median over rounds, and the ratio working tree / base is
taken round by round, so the shared machine's drift falls on both sides alike. The load average is
recorded beside the timings. Lowering runs in a subprocess per revision with that revision on
`sys.path` first.

    .venv/bin/python benchmarks/graph_revisions.py --base HEAD~1 --runtime executorch --dtype fp32 \
        --out benchmarks/results/graph_revisions_executorch_fp32.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
N_ITEMS = 1682  # ml-100k's catalogue
SHAPES = [  # (attention, L, d, [(heads, ffn), ...], gates)
    ("softmax", 50, 32, [(2, 128), (2, 128)], False),
    ("softmax", 200, 32, [(2, 128), (2, 128)], False),
    ("softmax", 50, 64, [(2, 256), (2, 256)], False),
    ("softmax", 200, 64, [(2, 256), (2, 256)], False),
    ("softmax", 100, 48, [(1, 64), (4, 128), (2, 256)], True),
    ("linear", 50, 32, [(2, 128), (2, 128)], False),
    ("linear", 200, 32, [(2, 128), (2, 128)], False),
    ("linear", 200, 64, [(2, 256), (2, 256)], False),
    ("linear", 100, 48, [(1, 64), (4, 128), (2, 256)], True),
]


def shape_name(shape: tuple) -> str:
    """e.g. `softmax L50 d32 2x128,2x128`, with ` +gates` when gated."""
    kind, L, d, layers, gates = shape
    return f"{kind} L{L} d{d} " + ",".join(f"{h}x{f}" for h, f in layers) + (" +gates" if gates else "")


def lower_all(outdir: Path, runtime: str, dtype: str) -> None:
    """Subprocess side: lower every shape with the easrec found first on sys.path."""
    import torch

    from easrec.export.lowering import lower, suffix_for
    from easrec.profiling.components import program_module
    from easrec.space import Arch, LayerArch

    torch.set_num_threads(1)
    info = {}
    for i, (kind, L, d, layers, gates) in enumerate(SHAPES):
        arch = Arch(max_len=L, d=d, layers=tuple(LayerArch(h, f) for h, f in layers), attention=kind, gates=gates,
                    head_size=16)
        module, example = program_module(arch, N_ITEMS)
        path = outdir / f"g{i}{suffix_for(runtime)}"
        t0 = time.perf_counter()
        lower(module, example, path, runtime, dtype, cache=False)
        info[str(i)] = {"path": str(path), "lower_s": time.perf_counter() - t0, "ids": example[0].tolist()}
    import easrec.model.sasrec as sasrec
    info["model_source"] = sasrec.__file__
    (outdir / "lowered.json").write_text(json.dumps(info))


def checkout(rev: str, where: Path) -> Path:
    """A detached worktree of `rev`, with easrec.export / .profiling / .devices reachable from its `easrec/`
    (the editable install maps those names to the working tree's folders)."""
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-f", str(where), rev], check=True,
                   capture_output=True)
    for sub in ("export", "profiling", "devices"):
        link = where / "easrec" / sub
        if not link.exists():
            link.symlink_to(where / sub, target_is_directory=True)
    return where


def lower_revision(root: Path, outdir: Path, runtime: str, dtype: str) -> dict:
    """Lower every shape in a subprocess that imports easrec from `root`."""
    outdir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(root))
    subprocess.run([sys.executable, __file__, "--lower-only", str(outdir), "--runtime", runtime, "--dtype", dtype],
                   check=True, env=env, cwd=str(root))
    return json.loads((outdir / "lowered.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="HEAD", help="git revision to compare the working tree with (default HEAD)")
    ap.add_argument("--runtime", choices=["executorch", "onnxruntime"], default="executorch")
    ap.add_argument("--dtype", choices=["fp32", "int8"], default="fp32")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--runs", type=int, default=20, help="timed calls per graph per round (the fastest is kept)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--lower-only", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.lower_only is not None:
        lower_all(args.lower_only, args.runtime, args.dtype)
        return

    import numpy as np

    from easrec.devices.runners import load_runner

    tmp = Path(tempfile.mkdtemp(prefix="easrec-graph-ab-"))
    try:
        base_root = checkout(args.base, tmp / "base")
        base_rev = subprocess.run(["git", "-C", str(base_root), "rev-parse", "--short", "HEAD"], check=True,
                                  capture_output=True, text=True).stdout.strip()
        lowered = {"base": lower_revision(base_root, tmp / "base-out", args.runtime, args.dtype),
                   "tree": lower_revision(REPO, tmp / "tree-out", args.runtime, args.dtype)}
        assert lowered["base"]["model_source"].startswith(str(base_root)), lowered["base"]["model_source"]
        runners, inputs = {}, {}
        for side, info in lowered.items():
            for i in range(len(SHAPES)):
                runners[(side, i)] = load_runner(info[str(i)]["path"], threads=1)
                inputs[(side, i)] = [np.asarray(info[str(i)]["ids"], dtype=np.int64)]
        for key, r in runners.items():  # warm-up, and the two revisions must agree on the top-10
            out = r.run(inputs[key])
            if key[0] == "tree":
                other = runners[("base", key[1])].run(inputs[("base", key[1])])
                if not np.array_equal(out[0], other[0]):
                    print(f"note: {shape_name(SHAPES[key[1]])}: top-10 differs between revisions")
        times: dict = {key: [] for key in runners}
        loads = [os.getloadavg()[0]]
        keys = list(runners)
        for _ in range(args.rounds):
            random.shuffle(keys)
            for key in keys:
                r, x = runners[key], runners[key].prepare(inputs[key])
                for _ in range(3):
                    r.call(x)
                best = float("inf")
                for _ in range(args.runs):
                    t0 = time.perf_counter()
                    r.call(x)
                    best = min(best, time.perf_counter() - t0)
                times[key].append(best * 1e3)
            loads.append(os.getloadavg()[0])
        rows = []
        print(f"{args.runtime} {args.dtype}, base {args.base} ({base_rev}) vs working tree; "
              f"{args.rounds} rounds, load {min(loads):.2f}-{max(loads):.2f}")
        print(f"{'graph':38} {'base ms':>8} {'tree ms':>8} {'tree/base':>9} {'lower s base/tree':>18}")
        for i, shape in enumerate(SHAPES):
            b, t = times[("base", i)], times[("tree", i)]
            ratio = statistics.median(tb / bb for tb, bb in zip(t, b))
            row = {"graph": shape_name(shape), "base_ms": statistics.median(b), "tree_ms": statistics.median(t),
                   "ratio": ratio, "lower_s_base": lowered["base"][str(i)]["lower_s"],
                   "lower_s_tree": lowered["tree"][str(i)]["lower_s"]}
            rows.append(row)
            print(f"{row['graph']:38} {row['base_ms']:8.3f} {row['tree_ms']:8.3f} {ratio:9.3f} "
                  f"{row['lower_s_base']:8.1f} / {row['lower_s_tree']:.1f}")
        geo = float(np.exp(np.mean(np.log([r["ratio"] for r in rows]))))
        print(f"geometric mean tree/base: {geo:.3f}")
        if args.out:
            result = {"runtime": args.runtime, "dtype": args.dtype, "base": args.base, "base_commit": base_rev,
                      "rounds": args.rounds, "runs": args.runs, "load_min": min(loads), "load_max": max(loads),
                      "geomean_ratio": geo, "rows": rows, "date": time.strftime("%Y-%m-%d %H:%M")}
            args.out.parent.mkdir(parents=True, exist_ok=True)
            tmp_out = args.out.with_suffix(".tmp")
            tmp_out.write_text(json.dumps(result, indent=1))
            tmp_out.replace(args.out)
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tmp / "base")],
                       capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
