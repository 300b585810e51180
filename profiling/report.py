"""`report.html` (self-contained: inline CSS, figures as base64 PNG data URIs, no external resource)
and `report.md` for one run directory.

`easrec report RUN` reads the run directory's typed records (`easrec.rundir.RunDir`,
`easrec.records`): `metrics.json` (train and search records), `arch.json`, `config.json`, and when
present `lut.json`, `artifacts.json`, `bench.json`, `energy.json`, `commands.json`,
`data_stats.json` (without it the data set is reloaded from `config.json` when possible). A bench,
energy or artifact row names its model ("baseline" or "subnet"); an energy row without one
(`easrec energy --out` writes none) takes the model of the artifacts.json row of the same file.
Search candidates are the ones the search wrote (`metrics.json` `candidates`). Anything missing gives
a section saying so.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

from easrec.io import atomic_write_text, read_json
from easrec.profiling.report_doc import CSS, Document, esc
from easrec.profiling.report_inputs import (
    RUN_FILES, VERSION_PACKAGES, load_run, n_items_of, one_record, records_of, reload_stats, versions,
)
from easrec.profiling.report_sections import (
    METRIC_KEYS, section_arch, section_commands, section_compare, section_data, section_energy, section_lut,
    section_pareto, section_search,
)
from easrec.records import ArtifactRecord, BenchRecord, CommandsRecord, DataRecord, EnergyRecord
from easrec.rundir import RunDir

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

    Each argument left as None is read from the run directory's record of the same role (`RUN_FILES`)
    when present; a given one is a file path, JSON content or the records (`easrec.records`).
    """
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    base = load_run(baseline_run) if baseline_run else None

    rd = RunDir(run_dir)
    lut_data = one_lut(lut) if lut is not None else rd.lut()
    artifacts_l = records_of(artifacts, ArtifactRecord, "artifacts") if artifacts is not None else rd.artifacts()
    bench_l = records_of(bench, BenchRecord, "bench") if bench is not None else rd.bench()
    energy_l = records_of(energy, EnergyRecord, "energy") if energy is not None else rd.energy()
    cmds = one_record(commands, CommandsRecord, "commands") if commands is not None else rd.commands()
    stats = one_record(data_stats, DataRecord, "data_stats") if data_stats is not None else rd.data()
    if stats is None:
        reloaded = reload_stats(run.config)
        stats = DataRecord.from_dict(reloaded, "the data set of config.json") if reloaded else None

    n_items = n_items_of(stats.to_dict() if stats else None, run.train.to_dict(), run.config,
                         base.train.to_dict() if base else {})

    doc = Document()
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    doc.h(1, f"easrec report: {run_dir.name}")
    doc.p(f"Run directory {run_dir.resolve()}; written {now}. Every number below comes from the files of this run "
          "(and of the baseline run, the LUT and the measurement files named in each section).", "note")

    section_data(doc, stats)
    models = section_compare(doc, run, base, lut_data, artifacts_l, bench_l, energy_l, n_items)
    section_pareto(doc, run.search, models)
    section_lut(doc, lut_data, models)
    section_search(doc, run_dir, run.search)
    section_energy(doc, energy_l, artifacts_l)
    section_arch(doc, run, base)
    section_commands(doc, cmds, run)

    out = Path(out_dir) if out_dir else run_dir
    out.mkdir(parents=True, exist_ok=True)
    html_text = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>easrec report: {esc(run_dir.name)}</title>"
        f"<style>{CSS}</style></head><body>\n"
        + "\n".join(doc.html)
        + "\n</body></html>\n"
    )
    md_text = "\n".join(doc.md).lstrip() + "\n"
    html_path, md_path = out / "report.html", out / "report.md"
    atomic_write_text(html_path, html_text)
    atomic_write_text(md_path, md_text)
    return html_path, md_path


def one_lut(lut: str | Path | dict) -> dict:
    """The LUT given to `write_report`: a path to `easrec profile`'s table, or its content."""
    return read_json(Path(lut), "LUT") if isinstance(lut, (str, Path)) else lut
