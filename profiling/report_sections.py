"""The sections of a run's report: data, baseline vs subnet, accuracy vs latency, LUT, search, energy, architecture, commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from easrec.profiling.plots import accuracy_vs_latency, energy_bars, lut_scatter, search_trace
from easrec.profiling.report_doc import Document, fmt, is_num
from easrec.profiling.report_inputs import (
    RunInputs, artifact_label, arch_obj, lut_cost, mflops, model_of, versions,
)
from easrec.records import ArtifactRecord, BenchRecord, CommandsRecord, DataRecord, EnergyRecord, SearchRecord

METRIC_KEYS = ("hr@10", "ndcg@10", "mrr@10")


def section_data(doc: Document, record: DataRecord | None) -> None:
    """Data set statistics."""
    doc.h(2, "Data set")
    stats = record.to_dict() if record else None
    if stats is None:
        doc.missing("no data statistics: write RUN/data_stats.json (`easrec data stats DATA --json`) or keep "
                    "config.json's data spec loadable")
        return
    rows = [[k, stats.get(k)] for k in ("name", "source", "users", "items", "interactions", "density", "eval_users")
            if k in stats]
    doc.table(["statistic", "value"], rows)
    sl = stats.get("seq_len")
    if isinstance(sl, dict):
        keys = [k for k in ("min", "p25", "p50", "p75", "p90", "p99", "max", "mean") if k in sl]
        doc.p("Sequence length per user:")
        doc.table(keys, [[sl[k] for k in keys]])


def section_compare(doc: Document, run: RunInputs, base: RunInputs | None, lut: Any, artifacts: list[ArtifactRecord],
                    bench: list[BenchRecord], energy: list[EnergyRecord], n_items: int | None) -> dict[str, dict]:
    """Baseline vs subnet table and the artifacts; returns the per-model facts."""
    doc.h(2, "Baseline SASRec vs searched subnet")
    search = run.search
    models: dict[str, dict] = {}
    entries = [("subnet", run)] + ([("baseline", base)] if base else [])
    for name, r in entries:
        tr = r.train
        predicted = tr.predicted_ms
        if predicted is None:
            predicted = lut_cost(lut, r.arch)
        if predicted is None and name == "baseline" and search and search.cost_unit == "ms":
            predicted = search.reference_cost
        # Fixed-point comparisons use the fp32 artifact; an int8 row is its own artifact line below.
        b_rows = [b for b in bench if model_of(b, artifacts) == name and b.quantize in (None, "none")]
        e_rows = [e for e in energy if model_of(e, artifacts) == name and e.quantize in (None, "none")]
        # Runs benched by earlier easrec kept the subnet's measurement in metrics.json only.
        measured = b_rows[0].median_ms if b_rows else tr.measured_ms
        arch = arch_obj(r.arch)
        models[name] = {
            "label": "searched subnet" if name == "subnet" else "baseline SASRec",
            "arch": r.arch, "describe": arch.describe() if arch else "–",
            "metrics": tr.test or {}, "params": tr.params, "mflops": tr.mflops or mflops(r.arch, n_items),
            "predicted_ms": predicted, "measured_ms": measured,
            "measured_on": (b_rows[0].device, artifact_label(b_rows[0])) if b_rows else None,
            "mj": e_rows[0].mj if e_rows else None,
            "energy_source": e_rows[0].source if e_rows else None,
            "train_seconds": tr.train_seconds,
        }
    if base is None:
        doc.missing("no baseline run given (--baseline RUN): only the searched model is shown")
    names = list(models)
    rows = [["architecture"] + [models[n]["describe"] for n in names]]
    for k in METRIC_KEYS:
        rows.append([f"test {k.upper()}"] + [models[n]["metrics"].get(k) for n in names])
    rows.append(["parameters"] + [models[n]["params"] for n in names])
    rows.append(["MFLOPs / inference"] + [models[n]["mflops"] for n in names])
    rows.append(["predicted latency (ms, LUT)"] + [models[n]["predicted_ms"] for n in names])
    rows.append(["measured latency (ms, median)"] + [models[n]["measured_ms"] for n in names])
    rows.append(["measured on"] + [" / ".join(map(str, models[n]["measured_on"])) if models[n]["measured_on"] else None
                                   for n in names])
    rows.append(["energy (mJ / inference)"] + [models[n]["mj"] for n in names])
    rows.append(["energy source"] + [models[n]["energy_source"] for n in names])
    rows.append(["training seconds"] + [models[n]["train_seconds"] for n in names])
    if search:
        rows.append([f"search budget ({search.cost_unit})", search.budget] + ([None] if base else []))
    doc.table(["", *(models[n]["label"] for n in names)], rows)
    if base and all(models[n]["measured_ms"] for n in names):
        ratio = models["subnet"]["measured_ms"] / models["baseline"]["measured_ms"]
        asked = search.budget / search.reference_cost if search and search.cost_unit == "ms" and search.reference_cost else None
        # Both measured in this run, so a session running faster or slower than the table's build cancels out.
        doc.p(f"Measured latency ratio subnet / baseline: {ratio:.3f}"
              + (f", against the budget's ratio {asked:.3f} ({ratio / asked:.2f}×)." if asked else "."))
    if not bench:
        doc.missing("no latency measurements (RUN/bench.json): measured latencies come from metrics.json only")

    doc.h(3, "Artifacts")
    if not artifacts:
        doc.missing("no exported artifacts listed (RUN/artifacts.json)")
    else:
        rows = []
        for a in artifacts:
            par = a.parity or {}
            b = next((b for b in bench if artifact_label(b) == artifact_label(a)), None)
            e = next((e for e in energy if artifact_label(e) == artifact_label(a)), None)
            size = a.size_bytes
            if size is None and Path(a.path).is_file():
                size = Path(a.path).stat().st_size
            rows.append([
                a.model, artifact_label(a), a.format, a.quantize,
                round(size / 1024, 1) if is_num(size) else None,
                a.artifact_ndcg,
                ("passed" if par.get("passed") else "FAILED") if par else None,
                b.median_ms if b else None, e.mj if e else None,
            ])
        doc.table(["model", "file", "format", "quantize", "size (KiB)", "NDCG@10 (artifact)", "parity",
                   "median ms", "mJ / inference"], rows)
    return models


def section_pareto(doc: Document, search: SearchRecord | None, models: dict) -> None:
    """Accuracy against latency, with the search candidates."""
    doc.h(2, "Accuracy vs latency")
    points = []
    # Candidates are on the plot only when the search costed them in ms and scored them (two or more candidates).
    for c in (search.candidates or []) if search and search.cost_unit == "ms" else []:
        x, y = c.get("cost"), c.get("valid_ndcg@10")
        if is_num(x) and is_num(y):
            points.append({"x": x, "y": y, "kind": "candidate", "measured": False})
    for name, mod in models.items():
        y = mod["metrics"].get("ndcg@10")
        if not is_num(y):
            continue
        if is_num(mod["predicted_ms"]):
            points.append({"x": mod["predicted_ms"], "y": y, "kind": name, "measured": False, "label": name})
        if is_num(mod["measured_ms"]):
            points.append({"x": mod["measured_ms"], "y": y, "kind": name, "measured": True, "label": name})
    png = accuracy_vs_latency(points) if points else None
    doc.image(png, "test NDCG@10 against latency; the orange step line joins the Pareto-optimal points "
                   "(filled markers measured, hollow ones LUT-predicted)",
              "no model has both a test NDCG@10 and a latency (predicted or measured)")
    if png is not None:
        doc.p(f"{len(points)} point(s); Pareto points are those no other point beats on both latency and NDCG@10. "
              "Search candidates (grey) are placed at their LUT cost and validation NDCG@10 with the supernet's "
              "shared weights, as the search compared them.", "note")


def section_lut(doc: Document, lut: Any, models: dict) -> None:
    """The LUT against end-to-end measurements."""
    doc.h(2, "Latency lookup table: predicted vs measured")
    if not isinstance(lut, dict):
        doc.missing("no LUT (RUN/lut.json or --lut): no per-component latency model to show")
        return
    dev = lut.get("device") or {}
    doc.table(["device", "runtime", "dtype", "threads", "entries", "unit"],
              [[dev.get("cpu") or dev.get("model") or dev.get("kind"), f"{dev.get('runtime')} {dev.get('runtime_version', '')}".strip(),
                dev.get("dtype"), dev.get("threads"), len(lut.get("entries") or {}), lut.get("unit", "ms")]])
    val = lut.get("validation")
    if not isinstance(val, dict) or not val.get("subnets"):
        doc.missing("the LUT has no validation section: run `easrec profile validate LUT.json`")
        return
    fit = val.get("lut") or {}
    a, b = float(fit.get("a", 1.0)), float(fit.get("b", 0.0))
    rows = [r for r in val["subnets"] if is_num(r.get("lut_sum_ms")) and is_num(r.get("measured_ms"))]
    pred = [a * r["lut_sum_ms"] + b for r in rows]
    meas = [r["measured_ms"] for r in rows]
    t = fit.get("test") or {}
    title = (f"{len(rows)} subnets; {val.get('scored_by', 'held-out half')}: {t.get('within_10pct', float('nan')):.0%} within ±10 %, "
             f"MAPE {t.get('mape_pct', float('nan')):.1f} %, Kendall τ {t.get('kendall_tau', float('nan')):.2f}")
    hl = [{"predicted": mod["predicted_ms"], "measured": mod["measured_ms"], "label": mod["label"]}
          for mod in models.values() if is_num(mod["predicted_ms"]) and is_num(mod["measured_ms"])]
    doc.image(lut_scatter(pred, meas, title, highlight=hl),
              f"LUT prediction (a·Σ entries + b, a={a:.3g}, b={b:.3g} ms) against end-to-end measurement; shaded: ±10 %",
              "no validation rows with both a prediction and a measurement")
    score_rows = []
    for split in ("test", "all"):
        s = fit.get(split) or {}
        label = "cross-validated" if split == "test" and val.get("scored_by") else split
        score_rows.append([f"LUT ({label})", s.get("n"), s.get("within_10pct"), s.get("mape_pct"), s.get("kendall_tau")])
    fl = val.get("flops") or {}
    if fl.get("test"):
        s = fl["test"]
        score_rows.append(["FLOPs model (test)", s.get("n"), s.get("within_10pct"), s.get("mape_pct"), s.get("kendall_tau")])
    doc.table(["model", "n", "share within ±10 %", "MAPE %", "Kendall τ"], score_rows)


def section_search(doc: Document, run_dir: Path, search: SearchRecord | None) -> None:
    """How the search converged (its per-step log) and which candidates the projection weighed."""
    trace_path = run_dir / "search_log.jsonl"
    if search is None or not (trace_path.is_file() or search.finalists):
        return
    doc.h(2, "Search")
    entries = [json.loads(line) for line in trace_path.read_text().splitlines() if line.strip()] if trace_path.is_file() else []
    unit = search.cost_unit
    steps = search.search_steps if search.search_steps is not None else len(entries)
    doc.p(f"{steps} steps; entropy of α at the end {fmt(search.alpha_entropy_at_end)} nats; "
          f"budget {fmt(search.budget)} {unit}, predicted cost of the result {fmt(search.predicted_cost)} {unit} "
          f"({fmt(search.budget_used, 3)} of the budget).")
    doc.image(search_trace(entries, unit) if entries else None, "search trace", "no search trace (search_log.jsonl)")
    cands = search.candidates or []
    if cands:
        doc.table(["candidate", "why", f"cost ({unit})", "log p", "valid NDCG@10 (shared weights)", "chosen"],
                  [[c.get("arch"), c.get("why"), c.get("cost"), c.get("log_p"), c.get("valid_ndcg@10", "–"),
                    "yes" if c.get("chosen") else ""] for c in cands])
    finals = search.finalists or []
    if len(finals) > 1:
        doc.p(f"Finalists: α's choice and the costliest SASRec shapes that fit, each fine-tuned {search.finalist_epochs} "
              "epoch(s) from the inherited weights; the best on validation is the result.")
        doc.table(["finalist", "why", f"cost ({unit})", "valid NDCG@10 after the short fine-tune", "seconds", "chosen"],
                  [[c.get("arch"), c.get("why"), c.get("cost"), c.get("valid_ndcg@10", "–"), c.get("seconds"),
                    "yes" if c.get("chosen") else ""] for c in finals])


def section_energy(doc: Document, energy: list[EnergyRecord], artifacts: list[ArtifactRecord]) -> None:
    """Energy per inference, per part and source."""
    doc.h(2, "Energy per inference")
    if not energy:
        doc.missing("no energy measurement yet (RUN/energy.json from `easrec energy FILE --out`)")
        return
    bars, rows, notes = [], [], []
    for e in energy:
        parts = e.parts or {}
        label = f"{model_of(e, artifacts) or '–'}: {artifact_label(e)}"
        bars.append({"label": label, "parts": {k: 1000 * float(p.get("joules_per_inference") or 0) for k, p in parts.items()},
                     "sources": {k: p.get("source") for k, p in parts.items()}})
        for k, p in parts.items():
            if p.get("source") == "none":
                continue
            rows.append([label, k, 1000 * float(p.get("joules_per_inference") or 0), p.get("source"), p.get("method"),
                         p.get("active_power_w"), p.get("idle_power_w")])
            notes.append(f"{label} / {k}: {p.get('source')}: {p.get('explanation')}")
        co2 = e.co2e_kg_per_inference
        rows.append([label, "total", e.mj, e.source, f"{e.tool}; {e.runs} inferences on {e.device}"
                     + (f"; CO2e {co2 * 1e6:.3g} mg ({e.country_iso_code})" if is_num(co2) else ""), None, None])
    doc.image(energy_bars(bars), "energy per inference (mJ, net of an idle baseline of the same length), stacked by part",
              "no energy figures to plot")
    doc.table(["artifact", "part", "mJ / inference", "source", "method", "active W", "idle W"], rows)
    if any(e.source != "measured" for e in energy):
        doc.p("Some figures are ESTIMATES, not measurements: without RAPL energy counters (/sys/class/powercap) "
              "codecarbon models CPU power from the CPU's TDP and load, and RAM power as a constant.", "est")
    for n in notes:
        doc.p(n, "note")
    for e in energy:
        for w in e.warnings or []:
            doc.p(f"{artifact_label(e)}: {w}", "note")


def section_arch(doc: Document, run: RunInputs, base: RunInputs | None) -> None:
    """Both architectures, block by block."""
    doc.h(2, "Architecture")
    cols = [("searched subnet", run.arch)] + ([("baseline SASRec", base.arch)] if base else [])
    cols = [(n, a) for n, a in cols if isinstance(a, dict)]
    if not cols:
        doc.missing("no architecture (arch.json or metrics.json 'arch')")
        return
    keys = ("max_len", "d", "attention", "gates", "head_size")
    rows = [[k] + [a.get(k) for _, a in cols] for k in keys]
    rows.append(["depth"] + [len(a.get("layers") or []) for _, a in cols])
    doc.table(["", *(n for n, _ in cols)], rows)
    depth = max(len(a.get("layers") or []) for _, a in cols)
    lrows = []
    for i in range(depth):
        row: list[Any] = [f"block {i + 1}"]
        for _, a in cols:
            layers = a.get("layers") or []
            if i < len(layers):
                la = layers[i]
                hs = a.get("head_size")
                row += [la.get("heads"), la.get("ffn"), (la.get("heads") or 0) * hs if is_num(hs) else None]
            else:
                row += ["–", "–", "–"]
        lrows.append(row)
    header = ["block"]
    for n, _ in cols:
        header += [f"{n}: heads", f"{n}: FFN width", f"{n}: attention width"]
    doc.table(header, lrows)


def section_commands(doc: Document, record: CommandsRecord | None, run: RunInputs) -> None:
    """Commands, versions and the run config."""
    doc.h(2, "Commands and versions")
    vers = versions()
    vers.update({k: str(v) for k, v in ((record.versions if record else None) or {}).items()})
    cmds = record.commands if record else None
    if cmds:
        doc.pre("\n".join(str(c) for c in cmds))
    else:
        doc.missing("no command log (RUN/commands.json): the exact commands of this run are unknown")
    doc.table(["component", "version"], [[k, v] for k, v in vers.items()])
    cfg = run.config
    if cfg:
        doc.p("config.json of the run:")
        doc.pre(json.dumps(cfg, indent=1, default=str)[:4000])
