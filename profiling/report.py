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
from pathlib import Path
from typing import Any

from easrec.io import atomic_write_text
from easrec.profiling.report_doc import CSS, SELFCHECK_JS, Document, esc
from easrec.profiling.report_inputs import (
    RUN_FILES, VERSION_PACKAGES, as_list, load_run, load_value, n_items_of, reload_stats, versions,
)
from easrec.profiling.report_sections import (
    METRIC_KEYS, section_arch, section_commands, section_compare, section_data, section_energy, section_lut,
    section_pareto, section_search,
)

# Re-exported: what callers of the report have always found here.
__all__ = ["METRIC_KEYS", "RUN_FILES", "VERSION_PACKAGES", "load_run", "versions", "write_report"]


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

    lut_data = load_value(from_run(lut, "lut"))
    artifacts_l = as_list(from_run(artifacts, "artifacts"), "artifacts")
    bench_l = as_list(from_run(bench, "bench"), "bench")
    energy_l = as_list(from_run(energy, "energy"), "energy")
    cmds = load_value(from_run(commands, "commands"))
    stats = load_value(from_run(data_stats, "data_stats"))
    if stats is None:
        stats = reload_stats(run["config"])

    m, bm = run["metrics"], (base["metrics"] if base else None)
    n_items = n_items_of(stats if isinstance(stats, dict) else None, m, run["config"], bm or {})

    doc = Document()
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    doc.h(1, f"easrec report: {run_dir.name}")
    doc.p(f"Run directory {run_dir.resolve()}; written {now}. Every number below comes from the files of this run "
          "(and of the baseline run, the LUT and the measurement files named in each section).", "note")

    section_data(doc, stats)
    models = section_compare(doc, run, base, lut_data, artifacts_l, bench_l, energy_l, n_items)
    section_pareto(doc, m, models, lut_data)
    section_lut(doc, lut_data, models)
    section_search(doc, run_dir, m)
    section_energy(doc, energy_l, artifacts_l)
    section_arch(doc, run, base)
    section_commands(doc, cmds, run)

    out = Path(out_dir) if out_dir else run_dir
    out.mkdir(parents=True, exist_ok=True)
    html_text = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>easrec report: {esc(run_dir.name)}</title>"
        f"<style>{CSS}</style><script>{SELFCHECK_JS}</script></head><body>\n"
        + "\n".join(doc.html)
        + '\n<pre id="easrec-selfcheck" hidden></pre>\n</body></html>\n'
    )
    md_text = "\n".join(doc.md).lstrip() + "\n"
    html_path, md_path = out / "report.html", out / "report.md"
    atomic_write_text(html_path, html_text)
    atomic_write_text(md_path, md_text)
    return html_path, md_path
