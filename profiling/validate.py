"""End-to-end validation of a latency table: random whole subnets measured vs the LUT's prediction.

N random subnets of the table's space are extracted from a supernet (`Supernet.extract`), wrapped in
the shipped graph (`TopKGraph`: ids → top-k), lowered with the table's runtime and dtype (through the
lowered-graph cache), and measured on the device with the table's protocol: interleaved rounds with a
canary beside each graph, the median of per-round minima (`easrec.profiling.protocol`); with
`Settings.normalize` divided by the canary and put on the table's canary reference. Rows keep both
the raw and the canary-normalised value, and the noise floor is given for both.

Test-retest noise floor: the first `retest` subnets (≥ 10 by default) are loaded and measured a second
time, in a separate session; the share of them whose two measurements agree within ±10 % is the best
any predictor can score on this machine at this load (printed beside the predictor's share).

Corrections (none, affine, per component type: `easrec.profiling.corrections`) are scored by 5-fold
cross-validation (each subnet predicted by a fit on the other four fifths, so all N are held out once);
the one with the lowest cross-validated MAPE is fitted on all N, stored in the LUT (`correction`) and applied per component
by `LatencyTable.component_cost`, so the corrected cost stays additive. The analytic FLOPs model gets
the affine treatment on the same subnets, for comparison.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np

from easrec.cost.flops import FlopsCostModel
from easrec.errors import EasrecError
from easrec.io import atomic_write_json
from easrec.profiling import protocol
from easrec.profiling.corrections import (
    GROUPS, RIDGES, TIED, TYPES, block_counts, compare_corrections, correction_params, cross_validate_corrections, fit_per_type,
    grouped, predict, type_matrix,
)
from easrec.profiling.scores import evaluate, evaluate_cv, fit_affine, folds, kendall_tau, noise_floor, score, split
from easrec.profiling.subnets import sample_archs, subnet_module
from easrec.profiling.table import LatencyTable, device_fingerprint
from easrec.space import Arch

log = logging.getLogger(__name__)

CV_FOLDS = 5  # folds of the cross-validation that scores and chooses the correction

# Re-exported: the validation's parts, where callers have always found them.
__all__ = [
    "GROUPS", "RIDGES", "TIED", "TYPES", "block_counts", "compare_corrections", "correction_params", "evaluate", "fit_affine",
    "fit_per_type", "grouped", "kendall_tau", "noise_floor", "predict", "sample_archs", "score", "split",
    "refit_correction", "stored_subnets", "validation_archs", "subnet_module", "summarize_rows", "type_matrix", "validate_lut",
]


def validate_lut(
    lut_path: str | Path,
    device,
    n_subnets: int = 50,
    *,
    seed: int = 0,
    settings=None,
    workers: int | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    write: bool = True,
    chunk: int = 48,
    retest: int | None = None,
    cache: bool | str | Path | None = True,
) -> dict[str, Any]:
    """Measure `n_subnets` random subnets end to end (and `retest` of them twice, default max(10, n/2)
    capped at n); pick and write the correction and the metrics into the LUT."""
    lut_path = Path(lut_path)
    table = LatencyTable.load(lut_path)
    runtime, dtype = table.device["runtime"], table.device["dtype"]
    threads = int(table.device.get("threads") or 1)
    fp = device_fingerprint(device.info(), runtime, dtype)
    fp["threads"] = threads
    table = LatencyTable.load(lut_path, device_info=fp)
    if n_subnets < 4:
        raise EasrecError(f"--subnets: need at least 4 subnets (half to fit, half to score), got {n_subnets}")
    settings = settings or protocol.Settings(max_seconds=3.0)
    archs = validation_archs(table.space, n_subnets, seed)
    n_retest = min(len(archs), max(10, len(archs) // 2)) if retest is None else min(len(archs), max(0, retest))
    flops = FlopsCostModel(table.space, table.n_items)
    clock = protocol.Clock()
    started = datetime.datetime.now().isoformat(timespec="seconds")
    monitor = protocol.LoadMonitor()
    canary_ref = table.data.get("canary_ref_ms")
    total = len(archs) + n_retest
    done = 0
    if progress:
        progress(0, total, "")
    first: dict[str, Any] = {}
    second: dict[str, Any] = {}
    measuring_s = 0.0
    with protocol.Lowerer(runtime, dtype, workers, cache=cache) as lowerer:
        jobs = [("subnet", a.hash(), (table.space.to_dict(), table.n_items, a.to_dict(), seed)) for a in archs]
        lowered = lowerer.lower_many(jobs, (lambda d, n: progress(0, total, f"lowering {d}/{n}")) if progress else None)
        canary_file = protocol.lower_canary(lowerer, table.data.get("canary_spec"))
        monitor.sample()
        for session, (items, store) in enumerate(((lowered, first), (lowered[:n_retest], second))):
            for group in protocol.chunks(items, chunk):
                t0 = protocol.Clock()
                rts = protocol.measure_graphs(device, group, canary_file, threads, settings,
                                              seed=seed + 1000 * session + len(store), monitor=monitor)
                measuring_s += t0.elapsed()
                if canary_ref is None:
                    canary_ref = protocol.canary_median(rts.values())
                for key, _, _ in group:
                    store[key] = (rts[key], protocol.session_record(rts[key], canary_ref, settings))
                    done += 1
                    if progress:
                        progress(done, total, key)
        lowering_s, hits, lowered_n = lowerer.seconds, lowerer.hits, lowerer.lowered
    canary_vals = [c for rt, _ in first.values() for c in rt.canary_ms] + [c for rt, _ in second.values() for c in rt.canary_ms]
    canary: dict[str, Any] = {}
    if canary_vals:
        half = max(1, len(canary_vals) // 4)
        canary = {"start_ms": float(np.median(canary_vals[:half])), "end_ms": float(np.median(canary_vals[-half:])),
                  "reference_ms": canary_ref}
        canary["drift"] = protocol.drift(canary["start_ms"], canary["end_ms"])
        if canary_ref:
            # The canary only partly follows the graphs (a slow phase slows linear attention more than
            # the canary, for one): validation far from the build's machine state is flagged.
            canary["vs_build"] = float(np.median(canary_vals)) / canary_ref - 1.0
            if abs(canary["vs_build"]) > 0.15:
                log.warning("%s: the canary runs %+.0f%% against the build: the machine is in another state than when "
                            "the table was built; rebuilding it now (graphs are cached) makes the comparison fairer",
                            lut_path, 100 * canary["vs_build"])
    rows: list[dict[str, Any]] = []
    for arch in archs:
        _, rec = first[arch.hash()]
        row = {
            "arch": arch.to_dict(), "describe": arch.describe(), "measured_ms": rec["median_ms"],
            "raw_ms": rec["raw_median_ms"], "normalized_ms": rec.get("normalized_median_ms"),
            "p10_ms": rec["p10_ms"], "p90_ms": rec["p90_ms"], "sigma_ms": rec["sigma_ms"],
            "runs": rec["runs"], "lut_sum_ms": table.raw_cost(arch), "type_sums": table.type_sums(arch),
            "mflops": flops.cost(arch), "load_ms": rec.get("load_ms"),
        }
        row["alt"] = rec.get("alt")
        if arch.hash() in second:
            _, rec2 = second[arch.hash()]
            row.update(retest_ms=rec2["median_ms"], retest_raw_ms=rec2["raw_median_ms"],
                       retest_normalized_ms=rec2.get("normalized_median_ms"), retest_alt=rec2.get("alt"))
        rows.append(row)
    result = summarize_rows(rows, seed)
    load = monitor.summary()
    result.update(seed=seed, canary=canary, seconds=clock.elapsed(), protocol=settings.to_dict(), started=started,
                  timing={"lowering_s": lowering_s, "measuring_s": measuring_s, "graphs_lowered": lowered_n,
                          "graphs_from_cache": hits},
                  load_average=load, normalized=bool(settings.normalize and canary_ref))
    if write:
        data = table.data
        chosen = result["corrections"]["candidates"][result["corrections"]["chosen"]]["params"]
        data["correction"] = {**chosen, "fitted_on": result["n_subnets"],
                              "selected_by": f"MAPE of {result['scored_by']}"}
        data["validation"] = result
        data.setdefault("load_average", {})["validation"] = load
        if data.get("canary_ref_ms") is None and canary_ref is not None:
            data["canary_ref_ms"] = canary_ref
        atomic_write_json(lut_path, data)
    return result


def validation_archs(space, n: int, seed: int = 0) -> list[Arch]:
    """`n` random subnets of `space`; in a gated space every other one without gates, and every fourth
    one a SASRec shape (every block as its first, no gates).

    Why ungated: the search also returns ungated models (its SASRec-shape finalists) and the budget's
    reference is an ungated SASRec, so the correction must be fitted and scored on both. Measured on the
    default-space ExecuTorch tables (2026-12-04): ungated subnets 100 % within +-10 %, gated ones 88 %.
    Why SASRec shapes: a correction chosen on mixed-width subnets only (`affine_blocks`, a negative term
    per block) under-predicted the deep uniform shapes the budget check exports by 10-15 %, while the
    uncorrected sum was within 1 % of them (benchmarks/README.md, "Linear attention exported whole").
    """
    out: dict[str, Arch] = {}
    for i, a in enumerate(sample_archs(space, n, seed)):
        if i % 4 == 3:
            a = dataclasses.replace(a, gates=False, layers=(a.layers[0],) * len(a.layers))
        elif i % 2 == 1:
            a = dataclasses.replace(a, gates=False)
        out.setdefault(a.hash(), a)
    return list(out.values())


def stored_subnets(table: LatencyTable, source: str | Path) -> list[dict[str, Any]]:
    """The subnets a table's validation measured, with type sums from the table's entries as they are now."""
    old = table.data.get("validation")
    if not isinstance(old, dict) or not old.get("subnets"):
        raise EasrecError(f"{source}: field 'validation.subnets' is missing (validate the table first: "
                          f"`easrec profile validate {source}`)")
    rows = [dict(r) for r in old["subnets"]]
    for i, r in enumerate(rows):
        if not isinstance(r.get("arch"), dict) or not isinstance(r.get("measured_ms"), (int, float)):
            raise EasrecError(f"{source}: field 'validation.subnets[{i}]' lacks 'arch' or 'measured_ms'")
        r["type_sums"] = table.type_sums(Arch.from_dict(r["arch"]))
        r["lut_sum_ms"] = sum(r["type_sums"].values())
    return rows


def refit_correction(lut_path: str | Path, *, write: bool = True) -> dict[str, Any]:
    """Choose the correction again from the subnets the table's validation stored (nothing is measured).

    For a table validated before a correction kind or the cross-validation existed: the same measurements,
    every kind of this easrec, scored the way this easrec scores them; the validation's timing, canary and
    load are kept.
    """
    lut_path = Path(lut_path)
    table = LatencyTable.load(lut_path)
    rows = stored_subnets(table, lut_path)
    old = table.data["validation"]
    # Keys of the older single-split scoring would otherwise survive beside the new ones.
    kept = {k: v for k, v in old.items() if k not in ("fit_idx", "test_idx")}
    result = {**kept, **summarize_rows(rows, int(old.get("seed") or 0))}
    result["refit"] = {"from": (table.data.get("correction") or {}).get("kind"),
                       "at": datetime.datetime.now().isoformat(timespec="seconds")}
    if write:
        chosen = result["corrections"]["candidates"][result["corrections"]["chosen"]]["params"]
        table.data["correction"] = {**chosen, "fitted_on": result["n_subnets"],
                              "selected_by": f"MAPE of {result['scored_by']}"}
        table.data["validation"] = result
        atomic_write_json(lut_path, table.data)
    return result


def summarize_rows(rows: list[dict[str, Any]], seed: int = 0, n_folds: int = CV_FOLDS) -> dict[str, Any]:
    """Metrics for measured rows (`measured_ms`, `lut_sum_ms`, `mflops`, optional `type_sums`, `retest_ms`):
    corrections compared by k-fold cross-validation (every subnet held out once), the chosen one fitted on
    all subnets as `lut`, FLOPs (affine, same folds) for comparison, the test-retest noise floor; the older
    single half split is kept beside it as `split_half`."""
    measured = [r["measured_ms"] for r in rows]
    fold_list = folds(len(rows), n_folds, seed)
    corr = cross_validate_corrections(rows, fold_list)
    chosen = corr["candidates"][corr["chosen"]]
    params = chosen["params"]
    S = type_matrix(rows)
    pred = predict(params, S, block_counts(rows))
    sums = np.array([r["lut_sum_ms"] for r in rows], float)
    for r, p, q in zip(rows, pred, chosen["out_of_fold_ms"]):
        r["predicted_ms"] = float(p)
        r["cv_predicted_ms"] = float(q)
    if params["kind"] == "per_type":
        # For plots that draw a·Σ + b: the affine view of the chosen predictions (exact for none/affine).
        a, b = fit_affine(sums, pred)
    else:
        a, b = float(params["a"]), float(params["b"])
    lut = {"kind": params["kind"], "a": a, "b": b, "factors": params.get("factors"), "per_block": params.get("per_block"),
           "test": chosen["test"],
           "all": chosen["all"], "fit": chosen["fit"], "raw_all": score(sums, measured), "kendall_tau_all": kendall_tau(sums, measured)}
    fit_idx, test_idx = split(len(rows), seed)
    half = compare_corrections(rows, fit_idx, test_idx)
    floor = noise_floor(rows)
    floor_raw = noise_floor(rows, "raw_ms", "retest_raw_ms")
    floor_norm = noise_floor(rows, "normalized_ms", "retest_normalized_ms")
    # The floor of every statistic the protocol can use, from the same two sessions (which one repeats best).
    floors = {}
    for stat in sorted({k for r in rows for k in (r.get("alt") or {})}):
        pairs = [{"a": r["alt"][stat], "b": r["retest_alt"][stat]} for r in rows
                 if r.get("retest_alt") and r["alt"].get(stat) and r["retest_alt"].get(stat) is not None]
        floors[stat] = noise_floor(pairs, "a", "b")
    result = {
        "n_subnets": len(rows),
        "scored_by": f"{len(fold_list)}-fold cross-validation",
        "folds": fold_list,
        "lut": lut,
        "corrections": {"chosen": corr["chosen"],
                        "candidates": {k: {"params": v["params"], "test": v["test"], "fit": v["fit"]}
                                       for k, v in corr["candidates"].items()}},
        "split_half": {"fit_idx": fit_idx, "test_idx": test_idx, "chosen": half["chosen"],
                       "test": {k: v["test"] for k, v in half["candidates"].items()}},
        "flops": evaluate_cv([r["mflops"] for r in rows], measured, fold_list),
        "noise_floor": floor,
        "noise_floor_raw": floor_raw,
        "noise_floor_normalized": floor_norm,
        "noise_floor_by_statistic": floors,
        "subnets": rows,
    }
    if floor and floor["within_10pct"] > 0:
        result["lut_vs_floor"] = lut["test"]["within_10pct"] / floor["within_10pct"]
    return result
