"""`easrec profile`: build a device latency lookup table; `easrec profile validate LUT.json`: check it end to end."""

from __future__ import annotations

import argparse
import time

from easrec.cli.common import add_json_flag, emit, load_space, progress_enabled
from easrec.cli.devices import add_device_args, check_runtime, device_from_args, device_threads
from easrec.cli.types import nonneg_int, positive_float, positive_int
from easrec.errors import EasrecError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `profile` (build) with its optional `validate` action."""
    p = subparsers.add_parser(
        "profile", help="build (or validate) a latency lookup table on a device",
        description="Build the latency lookup table of the search space on a device:\n"
                    "  easrec profile --device cpu --runtime executorch --out lut.json\n"
                    "Validate it end to end on random whole subnets:\n"
                    "  easrec profile validate lut.json [--subnets 50]\n"
                    "An interrupted build resumes when rerun with the same --out.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("action", nargs="?", choices=["validate"], help="'validate' checks an existing LUT")
    p.add_argument("lut", nargs="?", help="LUT file to validate")
    add_device_args(p, default=None,
                    device_help="cpu, cpu:N, cuda[:N], android:SERIAL, ssh:USER@HOST[:PORT] (default cpu; validate: the LUT's device)",
                    threads_help="runtime threads, fixed for every measurement (default: N of cpu:N, else 1; validate: the LUT's)")
    p.add_argument("--runtime", default="executorch", choices=["executorch", "onnxruntime", "torch"])
    p.add_argument("--dtype", default="fp32", choices=["fp32", "int8"])
    p.add_argument("--items", type=positive_int, default=10000, help="catalogue size scored by the model (default 10000)")
    p.add_argument("--out", help="LUT file to write (resumed when it exists)")
    p.add_argument("--space", help="search space JSON (SearchSpace.to_dict); default: the default space")
    p.add_argument("--workers", type=nonneg_int, default=None, help="processes lowering graphs (default: cores, 0 for torch)")
    p.add_argument("--design", choices=["auto", "entries", "shape"], default="auto",
                   help="entries: one whole program per table entry (259 in the default space); shape: --programs "
                        "programs fit a model of each component's shape that sets every entry (about 4x fewer graphs "
                        "to lower); auto (default): shape for spaces whose entries design needs more than 120 programs")
    p.add_argument("--programs", type=positive_int, default=None,
                   help="--design shape: whole programs measured (default 60; at least the model's parameters, 35 in the default space)")
    p.add_argument("--max-seconds", type=positive_float, default=None, help="cap on timed seconds per graph")
    p.add_argument("--subnets", type=positive_int, default=50, help="validate: number of subnets (default 50; random, a quarter of them SASRec shapes)")
    p.add_argument("--seed", type=nonneg_int, default=0, help="validate: seed of the subnet sample")
    p.add_argument("--refit", action="store_true",
                   help="validate: choose the correction again from the measurements the validation stored "
                        "(no device; for a table validated before a correction kind existed)")
    add_json_flag(p)
    p.set_defaults(func=run)


class _Progress:
    """A rich progress bar on stderr with the time left (nothing with --json).

    The bar appears at the first progress report, so a device that fails before measuring anything
    (unreachable board, no adb) leaves only the one-line error on stderr.
    """

    def __init__(self, enabled: bool, label: str):
        self.enabled, self.label = enabled, label
        self.bar = None
        self.task = None

    def __enter__(self) -> "_Progress":
        return self

    def _start(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("left"), TimeRemainingColumn(), TextColumn("{task.fields[what]}"),
            console=Console(stderr=True), transient=False,
        )
        self.bar.__enter__()
        self.task = self.bar.add_task(self.label, total=None, what="")

    def __call__(self, done: int, total: int, what: str) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            self._start()
        task = self.bar.tasks[0]
        if task.total is None:
            # Start the clock here so kept (resumed) entries do not distort the estimate.
            self.bar.reset(self.task, total=total, completed=done, what=what)
        else:
            self.bar.update(self.task, completed=done, what=what[:60])

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


def _device_name(fp: dict) -> str:
    """What a person calls the measured device: the GPU, the phone model or the CPU."""
    return str(fp.get("gpu") or fp.get("model") or fp.get("cpu"))


def run(args: argparse.Namespace) -> dict:
    """Dispatch build / validate."""
    if args.action == "validate":
        return run_validate(args)
    if args.lut:
        raise EasrecError(f"profile: unexpected argument {args.lut!r} (did you mean `easrec profile validate {args.lut}`?)")
    return run_build(args)


def _settings(args):
    from easrec.profiling.protocol import Settings

    s = Settings() if args.action != "validate" else Settings(max_seconds=3.0)
    if args.max_seconds is not None:
        s.max_seconds = float(args.max_seconds)
    return s


def run_build(args: argparse.Namespace) -> dict:
    """`easrec profile ... --out LUT.json`."""
    from easrec.io import ensure_writable
    from easrec.profiling.lut import build_lut

    if not args.out:
        raise EasrecError("profile: --out LUT.json is required (or `easrec profile validate LUT.json`)")
    ensure_writable(args.out, directory=False)
    if args.items < 10:
        raise EasrecError(f"--items must be >= 10, got {args.items}")
    space = load_space(args.space)
    device = device_from_args(args)
    check_runtime(device, args.runtime)
    threads = device_threads(device)
    t0 = time.perf_counter()
    with _Progress(progress_enabled(args), f"profiling {args.runtime} {args.dtype}") as bar:
        table = build_lut(device, space, args.runtime, args.dtype, args.items, threads, args.out,
                          progress=bar, settings=_settings(args), workers=args.workers, design_kind=args.design,
                          n_programs=args.programs)
    canary = (table.data.get("canary") or [{}])[-1]
    result = {
        "out": str(args.out), "entries": len(table.entries), "space_hash": table.data["space_hash"],
        "device": table.device, "seconds_this_run": time.perf_counter() - t0,
        "build_seconds": table.data.get("build_seconds"), "canary": canary, "design": table.data.get("design"),
    }
    rows = [("LUT", args.out), ("device", f"{_device_name(table.device)} ({table.device.get('spec')})"),
            ("runtime", f"{table.device['runtime']} {table.device['runtime_version']} {table.device['dtype']}, "
                        f"{threads} thread(s)"),
            ("entries", len(table.entries)),
            ("design", f"{(result['design'] or {}).get('kind', 'entries')}, {(result['design'] or {}).get('programs', '?')} whole programs"),
            ("build time (s)", result["build_seconds"]),
            ("canary drift", f"{100 * canary['drift']:+.1f} %" if "drift" in canary else "n/a (nothing measured)")]
    timing, load = table.data.get("timing") or {}, (table.data.get("load_average") or {}).get("build") or {}
    if timing:
        rows.append(("lowering / measuring (s)", f"{timing.get('lowering_s', 0):.0f} / {timing.get('measuring_s', 0):.1f} "
                                                 f"({timing.get('graphs_lowered', 0)} graphs lowered, "
                                                 f"{timing.get('graphs_from_cache', 0)} from cache)"))
    if load:
        rows.append(("load average", f"{load['min']:.1f}–{load['max']:.1f} on {load.get('cores', '?')} cores"))
    return emit(args, result, title="latency table", rows=rows)


def run_validate(args: argparse.Namespace) -> dict:
    """`easrec profile validate LUT.json [--subnets N]`."""
    from easrec.devices import parse_spec
    from easrec.io import ensure_writable
    from easrec.profiling.lut import LatencyTable
    from easrec.profiling.validate import validate_lut

    if not args.lut:
        raise EasrecError("profile validate: give the LUT file, e.g. `easrec profile validate lut.json`")
    ensure_writable(args.lut, directory=False, field="LUT")  # the validation is written into the LUT
    if args.refit:
        from easrec.profiling.validate import refit_correction

        res = refit_correction(args.lut)
        result = {k: v for k, v in res.items() if k != "subnets"}
        result["lut_file"] = str(args.lut)
        return emit(args, result, title=f"LUT correction refitted ({args.lut})", rows=validation_rows(res))
    stored = LatencyTable.load(args.lut).device
    threads = int(stored.get("threads") or 1)
    spec = args.device or stored.get("spec") or "cpu"
    asked = args.threads if args.threads is not None else parse_spec(spec)[1].get("threads")
    if asked is not None and asked != threads:
        raise EasrecError(f"{args.lut}: field 'device.threads' is {threads} but {asked} thread(s) were asked for "
                          "(a LUT is validated with the thread count it was measured with)")
    device = device_from_args(args, spec=spec, threads=threads)
    check_runtime(device, stored["runtime"])
    with _Progress(progress_enabled(args), f"validating {stored['runtime']} {stored['dtype']}") as bar:
        res = validate_lut(args.lut, device, args.subnets, seed=args.seed, settings=_settings(args),
                           workers=args.workers, progress=bar)
    result = {k: v for k, v in res.items() if k != "subnets"}
    result["lut_file"] = str(args.lut)
    return emit(args, result, title=f"LUT validation ({args.lut})", rows=validation_rows(res))


def validation_rows(res: dict) -> list[tuple[str, object]]:
    """The summary rows `easrec profile validate` prints for a `validate_lut` result."""
    lut, flops = res["lut"], res["flops"]
    rows = [
        ("subnets", f"{res['n_subnets']} (each held out once: {res.get('scored_by', 'cross-validation')})"),
        ("correction", "measured ≈ Σ factor(type) · LUT(type) + {:.3f} ms, factors {}".format(
            lut["b"], ", ".join(f"{k} {v:.2f}" for k, v in lut["factors"].items()))
         if lut.get("kind") == "per_type" else
         f"measured ≈ {lut['a']:.3f} · LUT sum + {lut['b']:.3f} ms + {lut['per_block']:.4f} ms per block"
         if lut.get("kind") == "affine_blocks" else f"measured ≈ {lut['a']:.3f} · LUT sum + {lut['b']:.3f} ms"),
        ("LUT within ±10 %", f"{100 * lut['test']['within_10pct']:.0f} %"),
        ("LUT MAPE", f"{lut['test']['mape_pct']:.1f} %"),
        ("LUT Kendall τ", f"{lut['test']['kendall_tau']:.3f}"),
        ("FLOPs within ±10 %", f"{100 * flops['test']['within_10pct']:.0f} %"),
        ("FLOPs MAPE", f"{flops['test']['mape_pct']:.1f} %"),
        ("FLOPs Kendall τ", f"{flops['test']['kendall_tau']:.3f}"),
        ("canary drift", f"{100 * res['canary']['drift']:+.1f} %"),
    ]
    chosen = (res.get("corrections") or {}).get("chosen")
    if chosen:
        rows.insert(1, ("correction chosen", f"{chosen} (lowest cross-validated error of "
                                              f"{', '.join(res['corrections']['candidates'])})"))
    floor = res.get("noise_floor")
    if floor:
        # The floor is how often two measurements of the same file agree: no table can beat it.
        rows.append(("noise floor (test-retest within ±10 %)", f"{100 * floor['within_10pct']:.0f} % of {floor['n']} subnets"))
    timing, load = res.get("timing") or {}, res.get("load_average") or {}
    if timing:
        rows.append(("time (s)", f"{res.get('seconds', 0):.0f} total, {timing.get('lowering_s', 0):.0f} lowering, "
                                 f"{timing.get('measuring_s', 0):.1f} measuring"))
    if load:
        rows.append(("load average", f"{load['min']:.1f}–{load['max']:.1f} on {load.get('cores', '?')} cores"))
    return rows
