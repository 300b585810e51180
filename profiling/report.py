"""`report.html` (self-contained: inline CSS, figures as base64 PNG data URIs, no external resource)
and `report.md` for one run directory.

Inputs are plain JSON-able values; `easrec report RUN` reads them from these files in RUN when present:

| file | argument | expected content |
|---|---|---|
| `metrics.json`, `arch.json`, `config.json` | run_dir | what `easrec train` / `easrec search` write (`test` {hr@10, ndcg@10, mrr@10, …}, `params`, `train_seconds`; a search run adds `budget`, `unit`, `predicted_cost`, `reference_cost`, `predicted_ms`, `cost_breakdown`; optional `pareto` / `candidates`: [{"arch", "ndcg@10", "predicted_ms" or "cost"}]) |
| (another run dir) | baseline_run | the baseline SASRec run (same files) |
| `lut.json` | lut | a LUT file of `easrec profile` (path or dict): `device`, `unit`, `validation` {`lut`: {a, b, test: {within_10pct, mape_pct, kendall_tau}}, `subnets`: [{lut_sum_ms, measured_ms, describe}]} |
| `artifacts.json` | artifacts | [{"model": "baseline"\|"subnet", "path", "format", "quantize", "size_bytes", "parity": {passed, max_abs_diff, artifact_metrics: {ndcg@10}}}] (or {"artifacts": [...]}) |
| `bench.json` | bench | [{"model", "artifact", "device", "median_ms", "p10_ms", "p90_ms", "runs", "threads"}] (`easrec bench --json` objects plus "model"; or {"bench": [...]}) |
| `energy.json` | energy | [`EnergyResult.to_dict()` plus "model"] (`easrec energy --json`; one object or a list; or {"energy": [...]}) |
| `commands.json` | commands | ["easrec train …", …] or {"commands": [...], "versions": {...}} |
| `data_stats.json` | data_stats | `Dataset.stats()` (`easrec data stats --json`); without it the data set is reloaded from `config.json` when possible |

A row's "model" may be missing: it is then inferred from the artifact path (same path as an
`artifacts` entry, or "baseline" in the file name). Anything missing gives a section saying so.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import logging
import math
import platform
from pathlib import Path
from typing import Any

from easrec.errors import EasrecError
from easrec.io import atomic_write_text, package_version, read_json

log = logging.getLogger(__name__)

RUN_FILES = {"artifacts": "artifacts.json", "bench": "bench.json", "energy": "energy.json", "lut": "lut.json",
             "commands": "commands.json", "data_stats": "data_stats.json"}
METRIC_KEYS = ("hr@10", "ndcg@10", "mrr@10")
VERSION_PACKAGES = ("easrec", "torch", "executorch", "onnxruntime", "onnx", "codecarbon", "numpy", "matplotlib")

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1050px;margin:24px auto;padding:0 16px;color:#222;line-height:1.45}
h1{font-size:1.6em;border-bottom:2px solid #4C72B0;padding-bottom:4px}h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0 14px;font-size:.92em}th,td{border:1px solid #ccc;padding:4px 9px;text-align:left;vertical-align:top}
th{background:#f1f3f7}td.num{text-align:right;font-variant-numeric:tabular-nums}
.missing{background:#fff7e0;border-left:4px solid #e0a800;padding:6px 10px;margin:8px 0}
.note{color:#555;font-size:.9em}.est{color:#a05a00;font-weight:600}.meas{color:#2a7a2a;font-weight:600}
img{max-width:100%;height:auto;border:1px solid #eee}pre{background:#f6f8fa;padding:8px 10px;overflow-x:auto;font-size:.88em}
"""

# Records load errors and image natural sizes into the DOM (used by the headless-browser test; harmless otherwise).
SELFCHECK_JS = """
window.__easrecErrors=[];
window.addEventListener('error',function(e){window.__easrecErrors.push(String(e.message||(e.target&&e.target.src)||e));},true);
window.addEventListener('load',function(){
 var imgs=[].slice.call(document.images).map(function(i){return{w:i.naturalWidth,h:i.naturalHeight,complete:i.complete};});
 var el=document.getElementById('easrec-selfcheck');
 if(el){el.textContent=JSON.stringify({images:imgs,errors:window.__easrecErrors});}
});
"""


# ------------------------------------------------------------------------------------ loading

def _load(value: Any, key: str | None = None) -> Any:
    """A path (str/Path) → its JSON; a dict wrapping a list under `key` → the list; otherwise as is."""
    if isinstance(value, (str, Path)):
        value = read_json(Path(value))
    if key and isinstance(value, dict) and isinstance(value.get(key), list):
        return value[key]
    return value


def _as_list(value: Any, key: str) -> list[dict]:
    value = _load(value, key)
    if value is None:
        return []
    if isinstance(value, dict):
        return [value]
    return [v for v in value if isinstance(v, dict)]


def load_run(run_dir: str | Path) -> dict[str, Any]:
    """metrics.json (required), arch.json and config.json (optional) of a run directory."""
    run = Path(run_dir)
    if not run.is_dir():
        raise EasrecError(f"{run}: no such run directory")
    if not (run / "metrics.json").is_file():
        raise EasrecError(f"{run}: no metrics.json (train or search the run first)")
    out = {"dir": str(run), "metrics": read_json(run / "metrics.json")}
    arch = out["metrics"].get("arch")
    if (run / "arch.json").is_file():
        arch = read_json(run / "arch.json")
    out["arch"] = arch
    out["config"] = read_json(run / "config.json") if (run / "config.json").is_file() else {}
    return out


def versions() -> dict[str, str]:
    """Python, platform and the versions of the packages easrec's numbers depend on."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    out.update({pkg: package_version(pkg, "not installed") for pkg in VERSION_PACKAGES})
    return out


# ------------------------------------------------------------------------------------ helpers

def _esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        return f"{v:.{digits}g}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class _Doc:
    """Builds the HTML and the Markdown side by side."""

    def __init__(self) -> None:
        self.html: list[str] = []
        self.md: list[str] = []

    def h(self, level: int, text: str) -> None:
        self.html.append(f"<h{level}>{_esc(text)}</h{level}>")
        self.md.append(f"\n{'#' * level} {text}\n")

    def p(self, text: str, cls: str | None = None) -> None:
        c = f' class="{cls}"' if cls else ""
        self.html.append(f"<p{c}>{_esc(text)}</p>")
        self.md.append(f"{text}\n")

    def missing(self, text: str) -> None:
        self.html.append(f'<div class="missing">{_esc(text)}</div>')
        self.md.append(f"> **Not available:** {text}\n")

    def table(self, header: list[str], rows: list[list[Any]]) -> None:
        th = "".join(f"<th>{_esc(h)}</th>" for h in header)
        body = []
        for r in rows:
            cells = "".join(
                f'<td class="num">{_esc(_fmt(c))}</td>' if _is_num(c) else f"<td>{_esc(_fmt(c))}</td>" for c in r)
            body.append(f"<tr>{cells}</tr>")
        self.html.append(f"<table><thead><tr>{th}</tr></thead><tbody>{''.join(body)}</tbody></table>")
        md_cell = lambda c: _fmt(c).replace("|", "\\|").replace("\n", " ")  # noqa: E731
        self.md.append("| " + " | ".join(md_cell(h) for h in header) + " |")
        self.md.append("|" + "|".join("---" for _ in header) + "|")
        for r in rows:
            self.md.append("| " + " | ".join(md_cell(c) for c in r) + " |")
        self.md.append("")

    def image(self, png: bytes | None, alt: str, missing: str) -> None:
        from easrec.profiling.plots import data_uri

        if png is None:
            self.missing(missing)
            return
        self.html.append(f'<figure><img src="{data_uri(png)}" alt="{_esc(alt)}"><figcaption class="note">{_esc(alt)}</figcaption></figure>')
        self.md.append(f"*Figure: {alt} (embedded in report.html).*\n")

    def pre(self, text: str) -> None:
        self.html.append(f"<pre>{_esc(text)}</pre>")
        self.md.append("```\n" + text + "\n```\n")


# ------------------------------------------------------------------------------------ model facts

def _arch_obj(arch: Any):
    from easrec.space import Arch

    if not isinstance(arch, dict):
        return None
    try:
        return Arch.from_dict(arch)
    except Exception:
        return None


def _n_items(*sources: Any) -> int | None:
    for s in sources:
        if isinstance(s, dict):
            for k in ("n_items", "items"):
                if isinstance(s.get(k), int) and s[k] > 0:
                    return int(s[k])
    return None


def _mflops(arch: Any, n_items: int | None) -> float | None:
    a = _arch_obj(arch)
    if a is None or not n_items:
        return None
    try:
        from easrec.cost.flops import FlopsCostModel
        from easrec.space import SearchSpace

        return float(FlopsCostModel(SearchSpace(), n_items).cost(a))
    except Exception as exc:  # an arch outside the default space, an API change: no FLOPs, no crash
        log.debug("FLOPs unavailable: %s", exc)
        return None


def _lut_cost(lut: dict | None, arch: Any) -> float | None:
    if not lut or not isinstance(arch, dict):
        return None
    try:
        from easrec.profiling.lut import LatencyTable

        return float(LatencyTable(lut).cost(_arch_obj(arch)))
    except Exception as exc:
        log.debug("LUT prediction unavailable: %s", exc)
        return None


def _model_of(row: dict, artifacts: list[dict]) -> str:
    if row.get("model"):
        return str(row["model"])
    path = str(row.get("artifact") or row.get("path") or "")
    for a in artifacts:
        if a.get("path") and Path(str(a["path"])).name == Path(path).name and a.get("model"):
            return str(a["model"])
    return "baseline" if "baseline" in Path(path).name.lower() else "subnet"


def _art_label(row: dict) -> str:
    path = row.get("artifact") or row.get("path") or "?"
    return Path(str(path)).name


# ------------------------------------------------------------------------------------ the report

def write_report(
    run_dir: str | Path,
    *,
    baseline_run: str | Path | None = None,
    lut: str | Path | dict | None = None,
    artifacts: Any = None,
    energy: Any = None,
    bench: Any = None,
    commands: Any = None,
    data_stats: Any = None,
    out_dir: str | Path | None = None,
) -> tuple[Path, Path]:
    """Write `report.html` and `report.md` into `out_dir` (default `run_dir`); return their paths.

    See the module docstring for every input's keys. Each argument left as None is read from the
    run directory's file of the same role (`RUN_FILES`) when present.
    """
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    base = load_run(baseline_run) if baseline_run else None

    def from_run(value: Any, role: str) -> Any:
        if value is None and (run_dir / RUN_FILES[role]).is_file():
            return run_dir / RUN_FILES[role]
        return value

    lut_data = _load(from_run(lut, "lut"))
    artifacts_l = _as_list(from_run(artifacts, "artifacts"), "artifacts")
    bench_l = _as_list(from_run(bench, "bench"), "bench")
    energy_l = _as_list(from_run(energy, "energy"), "energy")
    cmds = _load(from_run(commands, "commands"))
    stats = _load(from_run(data_stats, "data_stats"))
    if stats is None:
        stats = _reload_stats(run["config"])

    m, bm = run["metrics"], (base["metrics"] if base else None)
    n_items = _n_items(stats if isinstance(stats, dict) else None, m, run["config"], bm or {})

    doc = _Doc()
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    doc.h(1, f"easrec report: {run_dir.name}")
    doc.p(f"Run directory {run_dir.resolve()}; written {now}. Every number below comes from the files of this run "
          "(and of the baseline run, the LUT and the measurement files named in each section).", "note")

    _section_data(doc, stats)
    models = _section_compare(doc, run, base, lut_data, artifacts_l, bench_l, energy_l, n_items)
    _section_pareto(doc, m, models, lut_data)
    _section_lut(doc, lut_data, models)
    _section_search(doc, run_dir, m)
    _section_energy(doc, energy_l, artifacts_l)
    _section_arch(doc, run, base)
    _section_commands(doc, cmds, run)

    out = Path(out_dir) if out_dir else run_dir
    out.mkdir(parents=True, exist_ok=True)
    html_text = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>easrec report: {_esc(run_dir.name)}</title>"
        f"<style>{CSS}</style><script>{SELFCHECK_JS}</script></head><body>\n"
        + "\n".join(doc.html)
        + '\n<pre id="easrec-selfcheck" hidden></pre>\n</body></html>\n'
    )
    md_text = "\n".join(doc.md).lstrip() + "\n"
    html_path, md_path = out / "report.html", out / "report.md"
    atomic_write_text(html_path, html_text)
    atomic_write_text(md_path, md_text)
    return html_path, md_path


def _reload_stats(config: dict) -> dict | None:
    spec = (config or {}).get("data")
    if not isinstance(spec, dict) or "spec" not in spec:
        return None
    try:
        from easrec.data import load_dataset

        return load_dataset(spec["spec"], **(spec.get("options") or {})).stats()
    except Exception as exc:
        log.info("data statistics unavailable: %s", exc)
        return None


def _section_data(doc: _Doc, stats: Any) -> None:
    doc.h(2, "Data set")
    if not isinstance(stats, dict):
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


def _section_compare(doc, run, base, lut, artifacts, bench, energy, n_items) -> dict[str, dict]:
    doc.h(2, "Baseline SASRec vs searched subnet")
    m = run["metrics"]
    models: dict[str, dict] = {}
    entries = [("subnet", run)] + ([("baseline", base)] if base else [])
    for name, r in entries:
        mm = r["metrics"]
        test = mm.get("test") or {}
        predicted = mm.get("predicted_ms")
        if predicted is None and name == "baseline":
            predicted = _lut_cost(lut, r["arch"])
            if predicted is None and m.get("unit") == "ms":
                predicted = m.get("reference_cost")
        elif predicted is None:
            predicted = _lut_cost(lut, r["arch"])
        b_rows = [b for b in bench if _model_of(b, artifacts) == name]
        e_rows = [e for e in energy if _model_of(e, artifacts) == name]
        measured = mm.get("measured_ms")
        if measured is None and b_rows:
            measured = b_rows[0].get("median_ms")
        arch = _arch_obj(r["arch"])
        models[name] = {
            "label": "searched subnet" if name == "subnet" else "baseline SASRec",
            "arch": r["arch"], "describe": arch.describe() if arch else "–",
            "metrics": test, "params": mm.get("params"), "mflops": mm.get("mflops") or _mflops(r["arch"], n_items),
            "predicted_ms": predicted, "measured_ms": measured,
            "measured_on": (b_rows[0].get("device"), _art_label(b_rows[0])) if b_rows else None,
            "mj": e_rows[0].get("mj_per_inference", 1000 * e_rows[0].get("joules_per_inference", 0.0)) if e_rows else None,
            "energy_source": e_rows[0].get("source") if e_rows else None,
            "train_seconds": mm.get("train_seconds"),
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
    if "budget" in m:
        rows.append([f"search budget ({m.get('unit', '?')})", m.get("budget")] + ([None] if base else []))
    doc.table(["", *(models[n]["label"] for n in names)], rows)
    if base and all(models[n]["measured_ms"] for n in names):
        ratio = models["subnet"]["measured_ms"] / models["baseline"]["measured_ms"]
        doc.p(f"Measured latency ratio subnet / baseline: {ratio:.3f}.")
    if not bench:
        doc.missing("no latency measurements (RUN/bench.json): measured latencies come from metrics.json only")

    doc.h(3, "Artifacts")
    if not artifacts:
        doc.missing("no exported artifacts listed (RUN/artifacts.json)")
    else:
        rows = []
        for a in artifacts:
            par = a.get("parity") or {}
            b = next((b for b in bench if _art_label(b) == _art_label(a)), None)
            e = next((e for e in energy if _art_label(e) == _art_label(a)), None)
            size = a.get("size_bytes")
            if size is None and a.get("path") and Path(str(a["path"])).is_file():
                size = Path(str(a["path"])).stat().st_size
            rows.append([
                _model_of(a, artifacts), _art_label(a), a.get("format"), a.get("quantize"),
                round(size / 1024, 1) if _is_num(size) else None,
                (par.get("artifact_metrics") or {}).get("ndcg@10"),
                ("passed" if par.get("passed") else "FAILED") if par else None,
                b.get("median_ms") if b else None, e.get("mj_per_inference") if e else None,
            ])
        doc.table(["model", "file", "format", "quantize", "size (KiB)", "NDCG@10 (artifact)", "parity",
                   "median ms", "mJ / inference"], rows)
    return models


def _section_pareto(doc: _Doc, m: dict, models: dict, lut: Any) -> None:
    from easrec.profiling.plots import accuracy_vs_latency

    doc.h(2, "Accuracy vs latency")
    points = []
    for c in (m.get("pareto") or m.get("candidates") or []):
        if not isinstance(c, dict):
            continue
        y = c.get("ndcg@10", (c.get("metrics") or {}).get("ndcg@10"))
        x = c.get("measured_ms", c.get("predicted_ms", c.get("cost")))
        if _is_num(x) and _is_num(y):
            points.append({"x": x, "y": y, "kind": "candidate", "measured": "measured_ms" in c})
    for name, mod in models.items():
        y = mod["metrics"].get("ndcg@10")
        if not _is_num(y):
            continue
        if _is_num(mod["predicted_ms"]):
            points.append({"x": mod["predicted_ms"], "y": y, "kind": name, "measured": False, "label": name})
        if _is_num(mod["measured_ms"]):
            points.append({"x": mod["measured_ms"], "y": y, "kind": name, "measured": True, "label": name})
    png = accuracy_vs_latency(points) if points else None
    doc.image(png, "test NDCG@10 against latency; the orange step line joins the Pareto-optimal points "
                   "(filled markers measured, hollow ones LUT-predicted)",
              "no model has both a test NDCG@10 and a latency (predicted or measured)")
    if png is not None:
        doc.p(f"{len(points)} point(s); Pareto points are those no other point beats on both latency and NDCG@10. "
              "Search candidates appear when metrics.json holds 'pareto' or 'candidates'.", "note")


def _section_lut(doc: _Doc, lut: Any, models: dict) -> None:
    from easrec.profiling.plots import lut_scatter

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
    rows = [r for r in val["subnets"] if _is_num(r.get("lut_sum_ms")) and _is_num(r.get("measured_ms"))]
    pred = [a * r["lut_sum_ms"] + b for r in rows]
    meas = [r["measured_ms"] for r in rows]
    t = fit.get("test") or {}
    title = (f"{len(rows)} subnets; test half: {t.get('within_10pct', float('nan')):.0%} within ±10 %, "
             f"MAPE {t.get('mape_pct', float('nan')):.1f} %, Kendall τ {t.get('kendall_tau', float('nan')):.2f}")
    hl = [{"predicted": mod["predicted_ms"], "measured": mod["measured_ms"], "label": mod["label"]}
          for mod in models.values() if _is_num(mod["predicted_ms"]) and _is_num(mod["measured_ms"])]
    doc.image(lut_scatter(pred, meas, title, highlight=hl),
              f"LUT prediction (a·Σ entries + b, a={a:.3g}, b={b:.3g} ms) against end-to-end measurement; shaded: ±10 %",
              "no validation rows with both a prediction and a measurement")
    score_rows = []
    for split in ("test", "all"):
        s = fit.get(split) or {}
        score_rows.append([f"LUT ({split})", s.get("n"), s.get("within_10pct"), s.get("mape_pct"), s.get("kendall_tau")])
    fl = val.get("flops") or {}
    if fl.get("test"):
        s = fl["test"]
        score_rows.append(["FLOPs model (test)", s.get("n"), s.get("within_10pct"), s.get("mape_pct"), s.get("kendall_tau")])
    doc.table(["model", "n", "share within ±10 %", "MAPE %", "Kendall τ"], score_rows)


def _section_search(doc: _Doc, run_dir: Path, m: dict) -> None:
    """How the search converged (its per-step log) and which candidates the projection weighed."""
    from easrec.profiling.plots import search_trace

    trace_path = run_dir / "search_log.jsonl"
    if not trace_path.is_file():
        return
    doc.h(2, "Search")
    entries = [json.loads(line) for line in trace_path.read_text().splitlines() if line.strip()]
    unit = m.get("unit", "")
    doc.p(f"{m.get('search_steps', len(entries))} steps; entropy of α at the end {_fmt(m.get('alpha_entropy_at_end'))} nats; "
          f"budget {_fmt(m.get('budget'))} {unit}, predicted cost of the result {_fmt(m.get('predicted_cost'))} {unit} "
          f"({_fmt(m.get('budget_used'), 3)} of the budget).")
    doc.image(search_trace(entries, unit), "search trace", "no search trace")
    cands = m.get("candidates") or []
    if cands:
        doc.table(["candidate", "why", f"cost ({unit})", "log p", "valid NDCG@10 (shared weights)", "chosen"],
                  [[c.get("arch"), c.get("why"), c.get("cost"), c.get("log_p"), c.get("valid_ndcg@10", "–"),
                    "yes" if c.get("chosen") else ""] for c in cands])


def _section_energy(doc: _Doc, energy: list[dict], artifacts: list[dict]) -> None:
    from easrec.profiling.plots import energy_bars

    doc.h(2, "Energy per inference")
    if not energy:
        doc.missing("no energy measurement yet (RUN/energy.json from `easrec energy FILE --out`)")
        return
    bars, rows, notes = [], [], []
    for e in energy:
        parts = e.get("parts") or {}
        label = f"{_model_of(e, artifacts)}: {_art_label(e)}"
        bars.append({"label": label, "parts": {k: 1000 * float(p.get("joules_per_inference") or 0) for k, p in parts.items()},
                     "sources": {k: p.get("source") for k, p in parts.items()}})
        for k, p in parts.items():
            if p.get("source") == "none":
                continue
            rows.append([label, k, 1000 * float(p.get("joules_per_inference") or 0), p.get("source"), p.get("method"),
                         p.get("active_power_w"), p.get("idle_power_w")])
            notes.append(f"{label} / {k}: {p.get('source')}: {p.get('explanation')}")
        co2 = e.get("co2e_kg_per_inference")
        rows.append([label, "total", e.get("mj_per_inference", 1000 * float(e.get("joules_per_inference") or 0)),
                     e.get("source"), f"{e.get('tool')}; {e.get('runs')} inferences on {e.get('device')}"
                     + (f"; CO2e {co2 * 1e6:.3g} mg ({e.get('country_iso_code')})" if _is_num(co2) else ""), None, None])
    doc.image(energy_bars(bars), "energy per inference (mJ, net of an idle baseline of the same length), stacked by part",
              "no energy figures to plot")
    doc.table(["artifact", "part", "mJ / inference", "source", "method", "active W", "idle W"], rows)
    if any(e.get("source") != "measured" for e in energy):
        doc.p("Some figures are ESTIMATES, not measurements: without RAPL energy counters (/sys/class/powercap) "
              "codecarbon models CPU power from the CPU's TDP and load, and RAM power as a constant.", "est")
    for n in notes:
        doc.p(n, "note")
    for e in energy:
        for w in e.get("warnings") or []:
            doc.p(f"{_art_label(e)}: {w}", "note")


def _section_arch(doc: _Doc, run: dict, base: dict | None) -> None:
    doc.h(2, "Architecture")
    cols = [("searched subnet", run["arch"])] + ([("baseline SASRec", base["arch"])] if base else [])
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
                row += [la.get("heads"), la.get("ffn"), (la.get("heads") or 0) * hs if _is_num(hs) else None]
            else:
                row += ["–", "–", "–"]
        lrows.append(row)
    header = ["block"]
    for n, _ in cols:
        header += [f"{n}: heads", f"{n}: FFN width", f"{n}: attention width"]
    doc.table(header, lrows)


def _section_commands(doc: _Doc, cmds: Any, run: dict) -> None:
    doc.h(2, "Commands and versions")
    vers = versions()
    if isinstance(cmds, dict):
        vers.update({k: str(v) for k, v in (cmds.get("versions") or {}).items()})
        cmds = cmds.get("commands")
    if isinstance(cmds, list) and cmds:
        doc.pre("\n".join(str(c) for c in cmds))
    else:
        doc.missing("no command log (RUN/commands.json): the exact commands of this run are unknown")
    doc.table(["component", "version"], [[k, v] for k, v in vers.items()])
    cfg = run.get("config")
    if cfg:
        doc.p("config.json of the run:")
        doc.pre(json.dumps(cfg, indent=1, default=str)[:4000])
