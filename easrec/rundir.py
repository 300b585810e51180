"""A run directory's files by name: read and written in one place, and the summary `easrec run` prints.

Layout of an `easrec run` directory: the searched subnet's run at the top (`model.pt`,
`metrics.json`, `arch.json`, ...), `baseline/` (the SASRec it is compared with), `lut.json`,
`artifacts/` with `artifacts.json`, `bench.json`, `energy.json`, `data_stats.json`,
`commands.json`, `pipeline.json` and the report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from easrec.io import atomic_write_json, read_json
from easrec.space import Arch

METRICS = "metrics.json"
BASELINE_METRICS = "baseline/metrics.json"
ARTIFACTS = "artifacts.json"
BENCH = "bench.json"
ENERGY = "energy.json"
DATA_STATS = "data_stats.json"
COMMANDS = "commands.json"


class RunDir:
    """One run directory: its JSON records, read (None when absent) and written atomically."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def read(self, name: str) -> Any:
        """The JSON record `name` (a path relative to the run), or None when the run has none."""
        path = self.path / name
        return read_json(path) if path.exists() else None

    def write(self, name: str, obj: Any) -> None:
        """Write the JSON record `name` atomically."""
        atomic_write_json(self.path / name, obj)

    def update(self, name: str, **fields: Any) -> dict[str, Any]:
        """Add `fields` to the JSON object `name` (which must exist) and write it back; return it."""
        record = read_json(self.path / name)
        record.update(fields)
        self.write(name, record)
        return record

    def model_rows(self) -> dict[str, dict[str, Any]]:
        """Per model (baseline, subnet): architecture, test metrics, parameters, latency, size and energy."""
        bench, energy, arts = self.read(BENCH) or [], self.read(ENERGY) or [], self.read(ARTIFACTS) or []
        rows = {}
        for model, m in (("baseline", self.read(BASELINE_METRICS) or {}), ("subnet", self.read(METRICS) or {})):
            row = {"arch": Arch.from_dict(m["arch"]).describe() if m.get("arch") else None,
                   "ndcg@10": (m.get("test") or {}).get("ndcg@10"), "hr@10": (m.get("test") or {}).get("hr@10"),
                   "params": m.get("params")}
            for b in bench:
                if b["model"] == model:
                    row["ms" if b["quantize"] == "none" else "ms_int8"] = b["median_ms"]
            for a in arts:
                if a["model"] == model:
                    row["bytes" if a["quantize"] == "none" else "bytes_int8"] = a["size_bytes"]
                    if a["quantize"] != "none":
                        row["ndcg@10_int8"] = (a.get("parity") or {}).get("artifact_metrics", {}).get("ndcg@10")
            for e in energy:
                if e["model"] == model and e["quantize"] == "none":
                    row["mj"] = e.get("mj_per_inference")
                    row["energy_source"] = e.get("source")
            rows[model] = row
        return rows

    def summary(self, stage_seconds: dict[str, float | None]) -> dict[str, Any]:
        """The numbers a person wants at the end: accuracy, latency, energy, size of baseline and subnet."""
        sub_m = self.read(METRICS) or {}
        return {"run": str(self.path), "report": str(self.path / "report.html"), "models": self.model_rows(),
                "predicted_ms": sub_m.get("predicted_cost"), "budget_ms": sub_m.get("budget"),
                "measured_ms": sub_m.get("measured_ms"), "measured_over_budget": sub_m.get("measured_over_budget"),
                "stages": stage_seconds}
