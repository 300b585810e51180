"""Building the measured latency lookup table (`build_lut`) for one device, runtime and dtype.

The table's file format, its reader and the cost model are in `easrec.profiling.table`; the whole
programs measured come from `easrec.profiling.components.design_programs`, the entries are solved
by `easrec.profiling.solve` and checked by `easrec.profiling.monotonicity`; measuring follows
`easrec.profiling.protocol`.
"""

from __future__ import annotations

import datetime
import logging
from pathlib import Path
from typing import Any, Callable, Iterable

from easrec.errors import EasrecError
from easrec.io import atomic_write_json
from easrec.export.lowering import check
from easrec.profiling import protocol
from easrec.profiling.monotonicity import monotonicity_violations, program_violations, programs_to_remeasure
from easrec.profiling.shape_model import auto_design_kind, make_design, solve_shape_entries
from easrec.profiling.solve import program_value, solve_entries
from easrec.profiling.table import (
    FINGERPRINT_FIELDS, FORMAT_VERSION, METHOD, LatencyTable, check_data, check_device, device_fingerprint, new_data,
)
from easrec.space import Arch, SearchSpace, reference_arch

log = logging.getLogger(__name__)

# Re-exported: the table and its checks, where callers have always found them.
__all__ = [
    "FINGERPRINT_FIELDS", "FORMAT_VERSION", "METHOD", "LatencyTable", "build_lut", "check_data", "check_device",
    "device_fingerprint", "monotonicity_violations", "new_data", "program_value", "solve_entries",
]


def _session_summary(started: str, clock, monitor, lowerer, measured: int, measuring_s: float) -> dict[str, Any]:
    return {"started": started, "seconds": clock.elapsed(), "load_average": monitor.summary(),
            "programs_measured": measured, "lowering_s": lowerer.seconds if lowerer else 0.0,
            "measuring_s": measuring_s, "graphs_lowered": lowerer.lowered if lowerer else 0,
            "graphs_from_cache": lowerer.hits if lowerer else 0}


def build_lut(
    device,
    space: SearchSpace,
    runtime: str = "executorch",
    dtype: str = "fp32",
    n_items: int = 10000,
    threads: int = 1,
    out: str | Path = "lut.json",
    progress: Callable[[int, int, str], None] | None = None,
    *,
    batch: int = 1,
    settings=None,
    workers: int | None = None,
    extra: Iterable[Arch] | None = None,
    chunk: int = 48,
    cache: bool | str | Path | None = True,
    seed: int = 0,
    deep: bool = False,
    design_kind: str = "auto",
    n_programs: int | None = None,
) -> LatencyTable:
    """Measure the whole programs that pin down every component of `space` (plus `extra`, default the
    reference SASRec) and solve the entries into `out`.

    Resumes: programs already in `out` (same device, runtime, dtype, space, n_items) are kept and never
    measured again; the file is rewritten atomically after every group of `chunk` programs (and on
    Ctrl-C). Lowered graphs come from the cache (`cache`: True for `lowering_cache_dir()`, a folder,
    or None). Entries that break monotonicity beyond noise get their programs re-measured (at most
    `settings.remeasure_passes` times). `progress(done, total, what)` counts measured programs. `deep` also
    measures three- and four-block programs as extra least-squares rows (`deep_programs`).
    `design_kind="shape"` measures `n_programs` programs and sets every entry from a shape model fitted on
    them (`shape_model`); "auto" (default) takes the shape design for large spaces such as the default one
    (`auto_design_kind`). A table keeps the design it was begun with.
    """
    check(runtime, dtype)
    if batch != 1:
        raise EasrecError("batch: only batch 1 is profiled (on-device inference serves one user at a time)")
    settings = settings or protocol.Settings()
    out = Path(out)
    fingerprint = device_fingerprint(device.info(), runtime, dtype)
    fingerprint["threads"] = threads
    if out.exists():
        table = LatencyTable.load(out, device_info=fingerprint, complete=False)
        if table.data["space_hash"] != space.hash():
            raise EasrecError(f"{out}: field 'space' was measured for another search space ({table.data['space_hash']}); use another --out")
        if table.n_items != n_items:
            raise EasrecError(f"{out}: field 'n_items' is {table.n_items}, not {n_items}; use another --out")
        data = table.data
        if data.get("method") != METHOD:
            if not table.missing(space, [] if extra is None else extra):
                log.info("%s: complete table from the per-component method; kept as it is", out)
                return LatencyTable.load(out, space=space)
            raise EasrecError(f"{out}: field 'method' is {data.get('method')!r}, not {METHOD!r}: a partial table of the "
                              "per-component method cannot be resumed; use another --out")
    else:
        data = new_data(fingerprint, space, n_items, batch, settings.to_dict())
        data["canary_spec"] = protocol.canary_spec(space, n_items)
    spec = data.get("canary_spec")  # None: a table begun before specs, resumed with the small canary it began with
    extra = [reference_arch()] if extra is None else list(extra)
    clock = protocol.Clock()
    started = datetime.datetime.now().isoformat(timespec="seconds")
    monitor = protocol.LoadMonitor()
    t_design = protocol.Clock()
    begun = (data.get("design") or {}).get("kind", "entries") if data.get("programs") else None
    if design_kind == "auto":
        design_kind = begun or auto_design_kind(space, extra)
    if begun is not None and begun != design_kind:
        raise EasrecError(f"{out}: field 'design.kind' is {begun!r}, not {design_kind!r}: resume with --design {begun} "
                          "or use another --out")
    if begun == "shape" and n_programs is None:
        n_programs = (data.get("design") or {}).get("programs")
    design = make_design(design_kind, space, extra, deep=deep, n_programs=n_programs, n_items=n_items)
    data["design"] = {"programs": len(design.programs), "unknowns": len(design.unknowns), "rank": design.rank,
                      "gauge": design.gauge, "candidates": design.candidates, "deep": deep, "kind": design.kind}
    programs = data.setdefault("programs", {})
    timing = data.setdefault("timing", {"lowering_s": 0.0, "measuring_s": 0.0, "solving_s": 0.0,
                                        "graphs_lowered": 0, "graphs_from_cache": 0})
    timing["solving_s"] = float(timing.get("solving_s", 0.0)) + t_design.elapsed()
    total = len(design.programs)
    todo = [(pid, arch) for pid, arch in design.programs if pid not in programs]
    if progress:
        progress(total - len(todo), total, "")
    if not todo and data.get("monotonicity") is not None and not LatencyTable(data).missing(space, extra):
        return LatencyTable.load(out, space=space)  # finished before: nothing is measured, solved or recorded
    lowerer = None
    measuring_s = 0.0
    measured = 0
    canary: dict[str, Any] = {}

    def save() -> None:
        atomic_write_json(out, data)

    def finish_session() -> None:
        data["build_seconds"] = float(data.get("build_seconds", 0.0)) + clock.elapsed()
        summary = _session_summary(started, clock, monitor, lowerer, measured, measuring_s)
        data.setdefault("sessions", []).append(summary)
        data.setdefault("load_average", {})["build"] = summary["load_average"]
        if lowerer is not None:
            timing["lowering_s"] = float(timing.get("lowering_s", 0.0)) + lowerer.seconds
            timing["graphs_lowered"] = int(timing.get("graphs_lowered", 0)) + lowerer.lowered
            timing["graphs_from_cache"] = int(timing.get("graphs_from_cache", 0)) + lowerer.hits
        timing["measuring_s"] = float(timing.get("measuring_s", 0.0)) + measuring_s

    try:
        with protocol.Lowerer(runtime, dtype, workers, cache=cache) as lowerer:
            if todo:
                jobs = [("program", pid, (None if arch is None else arch.to_dict(), n_items, seed)) for pid, arch in todo]
                lowered = lowerer.lower_many(
                    jobs, (lambda d, n: progress(total - len(todo), total, f"lowering {d}/{n}")) if progress else None)
                canary_file = protocol.lower_canary(lowerer, spec)
                monitor.sample()
                for group in protocol.chunks(lowered, chunk):
                    t0 = protocol.Clock()
                    rts = protocol.measure_graphs(device, group, canary_file, threads, settings, seed=seed + measured,
                                                  monitor=monitor)
                    measuring_s += t0.elapsed()
                    cm = protocol.canary_median(rts.values())
                    if data.get("canary_ref_ms") is None and cm is not None:
                        data["canary_ref_ms"] = cm
                    rounds = next(iter(rts.values())).canary_ms
                    if rounds:  # the round canaries: the first round of the session against its last
                        canary.setdefault("start_ms", rounds[0])
                        canary["end_ms"] = rounds[-1]
                    arch_of = dict(todo)
                    for key, _, _ in group:
                        rec = protocol.session_record(rts[key], data.get("canary_ref_ms"), settings)
                        arch = arch_of[key]
                        programs[key] = {"arch": None if arch is None else arch.to_dict(), **_top(rec), "sessions": [rec]}
                        measured += 1
                    save()
                    if progress:  # after the save: what a progress callback interrupts is kept
                        first = total - len(todo) + measured - len(group)
                        for j, (key, _, _) in enumerate(group):
                            progress(first + j + 1, total, key)
            if canary.get("start_ms"):
                canary["drift"] = protocol.drift(canary["start_ms"], canary["end_ms"])
                data.setdefault("canary", []).append(canary)
            t_solve = protocol.Clock()
            remeasure_s = _solve_and_check(data, design, space, n_items, device, lowerer, threads, settings, seed, monitor, extra)
            measuring_s += remeasure_s
            timing["solving_s"] = float(timing.get("solving_s", 0.0)) + t_solve.elapsed() - remeasure_s
    finally:
        finish_session()
        save()
    if canary.get("drift") is not None and abs(canary["drift"]) > 0.1:
        log.warning("%s: canary drifted %+.1f%% during profiling: the machine is noisy", out, 100 * canary["drift"])
    log.info("%s: %d programs (%d measured now), lowering %.0f s (%d lowered, %d from cache), measuring %.0f s, load %s",
             out, total, measured, timing["lowering_s"], timing["graphs_lowered"], timing["graphs_from_cache"],
             timing["measuring_s"], _load_text(data["load_average"].get("build")))
    return LatencyTable.load(out, space=space)


def _load_text(summary: dict[str, Any] | None) -> str:
    if not summary or not summary.get("available", True):
        return "n/a"
    return f"{summary['mean']:.1f} (max {summary['max']:.1f}) on {summary.get('cores')} cores"


def _top(rec: dict[str, Any]) -> dict[str, Any]:
    """The summary fields of a session, as a program record's top level."""
    return {k: rec[k] for k in ("median_ms", "p10_ms", "p90_ms", "sigma_ms", "raw_median_ms", "rounds", "runs") if k in rec}


def _solve_and_check(data, design, space, n_items, device, lowerer, threads, settings, seed, monitor, extra=()) -> float:
    """Solve the entries; re-measure the programs behind monotonicity violations; solve again.

    Returns the seconds spent re-measuring."""
    programs = data["programs"]

    def check(entries, info):
        return program_violations(design, programs) + monotonicity_violations(entries, null=info["null"], unknowns=info["unknowns"])

    def solve():
        if design.kind == "shape":
            return solve_shape_entries(design, programs, space, n_items, extra)
        return solve_entries(design, programs, space, n_items)

    entries, info = solve()
    violations = check(entries, info)
    history = {"initial_violations": len(violations), "passes": [], "examples": violations[:5]}
    archs = dict(design.programs)
    spent = 0.0
    for p in range(max(0, int(settings.remeasure_passes))):
        if not violations:
            break
        pids = programs_to_remeasure(violations, info, design.unknowns)
        log.info("LUT: %d pair(s) break monotonicity beyond noise (worst: %s %.4f ms > %s %.4f ms); re-measuring %d programs",
                 len(violations), violations[0]["smaller"], violations[0]["smaller_ms"],
                 violations[0]["larger"], violations[0]["larger_ms"], len(pids))
        jobs = [("program", pid, (None if archs[pid] is None else archs[pid].to_dict(), n_items, seed)) for pid in pids]
        lowered = lowerer.lower_many(jobs)
        canary_file = protocol.lower_canary(lowerer, data.get("canary_spec"))
        t0 = protocol.Clock()
        rts = protocol.measure_graphs(device, lowered, canary_file, threads, settings, seed=seed + 7919 * (p + 1),
                                      monitor=monitor)
        spent += t0.elapsed()
        for pid in pids:
            rec = protocol.session_record(rts[pid], data.get("canary_ref_ms"), settings)
            programs[pid].setdefault("sessions", []).append(rec)
            value, sigma = program_value(programs[pid])
            programs[pid].update(median_ms=value, sigma_ms=sigma)
        entries, info = solve()
        before = len(violations)
        violations = check(entries, info)
        history["passes"].append({"remeasured": pids, "violations_before": before, "violations_after": len(violations)})
    history["final_violations"] = len(violations)
    history["remaining"] = violations[:10]
    if violations:
        log.warning("LUT: %d monotonicity violation(s) remain after re-measuring (worst: %s > %s)", len(violations),
                    violations[0]["smaller"], violations[0]["larger"])
    data["entries"] = entries
    data["monotonicity"] = history
    data["solve"] = {"max_rel_residual": info["max_rel_residual"], "bounds_active": info["bounds_active"],
                     "gauge": design.gauge, "prior_scale": info["prior_scale"],
                     "prior": "FLOPs (+ the embedding's elementwise work) x a fitted scale per component type; "
                              "decides only what whole programs cannot tell apart"}
    if design.kind == "shape":
        data["solve"].update(theta=info["theta"], prior="none: every entry is its shape's features x theta")
    return spent
