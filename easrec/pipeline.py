"""`easrec run`: data → baseline SASRec → device LUT → search → export → parity → latency + energy → report.

Each stage writes its result into the run directory and is recorded in `RUN/pipeline.json`; a stage
that finished is skipped when the pipeline runs again (`easrec run --resume RUN`), so a device lost
mid-run or a failing stage costs only that stage.

The run directory's files are read and written through `easrec.rundir.RunDir` (its layout is there).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from easrec.errors import EasrecError
from easrec.io import read_json
from easrec.presets import PRESETS, Preset
from easrec.records import ArtifactRecord, BenchRecord, CommandsRecord, DataRecord, EnergyRecord
from easrec.rundir import ARTIFACTS, BENCH, COMMANDS, DATA_STATS, ENERGY, RunDir
from easrec.space import Arch, SearchSpace

log = logging.getLogger(__name__)

# PRESETS and Preset live in easrec.presets and are re-exported here, where callers have always found them.
__all__ = ["LUT_DTYPE", "PRESETS", "STAGES", "STATE_FILE", "Pipeline", "Preset", "RunOptions", "cache_fields",
           "fingerprint_mismatch", "lut_cache_dir"]

STAGES = ("data", "baseline", "profile", "search", "export", "bench", "energy", "report")
STATE_FILE = "pipeline.json"
LUT_DTYPE = "fp32"


def cache_fields() -> tuple[str, ...]:
    """Device fields a cached LUT must share with the device at hand (beyond FINGERPRINT_FIELDS: the GPU, the phone
    model and the pinned cores, which a host's cpu fields do not tell apart)."""
    from easrec.profiling.lut import FINGERPRINT_FIELDS

    return tuple(FINGERPRINT_FIELDS) + ("gpu", "model", "pinned_cores")


def fingerprint_mismatch(stored: dict[str, Any], current: dict[str, Any], fields: tuple[str, ...]) -> str | None:
    """'device.FIELD is X, this device has Y' for the first of `fields` that differs (absent counts), else None."""
    for key in fields:
        if stored.get(key) != current.get(key):
            return f"field 'device.{key}' is {stored.get(key)!r}, this device has {current.get(key)!r}"
    return None


@dataclass
class RunOptions:
    """What the user asked for (saved in pipeline.json so --resume continues the same run)."""

    data: str = "synthetic"
    device: str = "cpu"
    runtime: str = "executorch"
    budget_ratio: float = 0.5
    preset: str = "full"
    threads: int = 1
    seed: int = 0
    lut_cache: str | None = None
    # Device options besides the spec and threads, as `easrec.devices.get_device` takes them (runner, cores, ...).
    device_options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        from easrec.devices import parse_spec

        spec_threads = parse_spec(self.device)[1].get("threads")
        if spec_threads is not None and self.threads != spec_threads:
            if self.threads != 1:
                raise EasrecError(f"device {self.device}: the spec says {spec_threads} thread(s) but threads={self.threads}")
            self.threads = spec_threads


def lut_cache_dir(opts: RunOptions) -> Path:
    """Where measured LUTs are kept for reuse across runs (keyed by device fingerprint, runtime, space and catalogue)."""
    import os

    return Path(opts.lut_cache or os.environ.get("EASREC_LUT_CACHE") or Path.home() / ".cache" / "easrec" / "luts")


class Pipeline:
    """The stages of `easrec run` over one run directory."""

    def __init__(self, out: Path, opts: RunOptions, on_stage: Callable[[str, str], None] | None = None):
        self.out = Path(out)
        self.run_dir = RunDir(self.out)
        self.opts = opts
        if opts.preset not in PRESETS:
            raise EasrecError(f"--preset must be one of {sorted(PRESETS)}, got {opts.preset!r}")
        self.preset = PRESETS[opts.preset]
        self.space = SearchSpace.from_dict(self.preset.space)
        self.baseline_arch = Arch.from_dict(self.preset.baseline, source="preset baseline")
        self.on_stage = on_stage or (lambda stage, status: None)
        self.state: dict[str, Any] = {"options": asdict(opts), "stages": {}}
        self.dataset = None

    # ---------------------------------------------------------------- state

    @classmethod
    def resume(cls, out: Path, on_stage=None) -> "Pipeline":
        """Reopen a run directory with the options it was started with."""
        path = Path(out) / STATE_FILE
        if not path.exists():
            raise EasrecError(f"{out}: no {STATE_FILE}: not an `easrec run` directory")
        state = read_json(path)
        pipe = cls(out, RunOptions(**state["options"]), on_stage)
        pipe.state = state
        return pipe

    @classmethod
    def open(cls, out: Path, opts: RunOptions, on_stage=None) -> "Pipeline":
        """A new run in `out`, or the same run continued when `out` was started with the same options."""
        path = Path(out) / STATE_FILE
        if path.exists():
            raw = read_json(path).get("options") or {}
            try:
                # Normalised like `opts`: options added since the run was started take their defaults.
                stored = asdict(RunOptions(**raw))
            except (TypeError, EasrecError):
                stored = raw
            if stored == asdict(opts):
                return cls.resume(out, on_stage)
            changed = sorted(k for k in asdict(opts) if stored.get(k) != asdict(opts)[k])
            raise EasrecError(f"{path}: this run was started with other options ({', '.join(changed)}); "
                              f"use --resume {out} to continue it or another --out")
        return cls(out, opts, on_stage)

    def change_budget(self, ratio: float) -> None:
        """Search again at another budget: keeps data, baseline and LUT, reruns search and everything after it."""
        if ratio == self.opts.budget_ratio:
            return
        self.opts.budget_ratio = ratio
        self.state["options"]["budget_ratio"] = ratio
        for stage in STAGES[STAGES.index("search"):]:
            self.state["stages"].pop(stage, None)
        for name in ("search_checkpoint.pt", "finalists.json", "finetune/checkpoint.pt"):
            (self.out / name).unlink(missing_ok=True)

    def save(self) -> None:
        """Write pipeline.json (options and every stage's status)."""
        self.run_dir.write(STATE_FILE, self.state)

    def done(self, stage: str) -> bool:
        """Whether `stage` finished in this run directory."""
        return self.state["stages"].get(stage, {}).get("status") == "done"

    def run(self) -> dict[str, Any]:
        """Run every stage not yet done; a failing stage is recorded and re-raised (earlier stages are kept)."""
        self.out.mkdir(parents=True, exist_ok=True)
        self.save()
        for stage in STAGES:
            if self.done(stage):
                self.on_stage(stage, "kept")
                continue
            self.on_stage(stage, "running")
            start = time.perf_counter()
            try:
                result = getattr(self, f"stage_{stage}")()
            except BaseException as exc:
                self.state["stages"][stage] = {"status": "failed", "error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                                               "seconds": time.perf_counter() - start}
                self.save()
                self.on_stage(stage, "failed")
                raise
            self.state["stages"][stage] = {"status": "done", "seconds": time.perf_counter() - start, "result": result}
            self.save()
            self.on_stage(stage, "done")
        return self.summary()

    # ---------------------------------------------------------------- helpers

    def data(self):
        if self.dataset is None:
            from easrec.data import load_dataset

            self.dataset = load_dataset(self.opts.data)
        return self.dataset

    def data_cfg(self) -> dict:
        from easrec.data import data_config

        return data_config(self.opts.data)

    def device(self):
        from easrec.devices import get_device

        return get_device(self.opts.device, threads=self.opts.threads, **self.opts.device_options)

    def commands(self) -> list[str]:
        o = self.opts
        flags = {"cores": "--cores", "runner": "--runner", "identity": "--ssh-key", "python": "--remote-python"}
        extra = "".join(f" {flags.get(k, '--' + k)} {','.join(map(str, v)) if isinstance(v, list) else v}"
                        for k, v in sorted(o.device_options.items()))
        return [f"easrec run {o.data} --device {o.device}{extra} --runtime {o.runtime} --budget-ratio {o.budget_ratio} "
                f"--preset {o.preset} --threads {o.threads} --seed {o.seed} --out {self.out}"]

    # ---------------------------------------------------------------- stages

    def stage_data(self) -> dict:
        stats = self.data().stats()
        self.run_dir.write_records(DATA_STATS, DataRecord.from_dict(stats, DATA_STATS))
        self.run_dir.write_records(COMMANDS, CommandsRecord(commands=self.commands()))
        return {"users": stats.get("users"), "items": stats.get("items"), "interactions": stats.get("interactions")}

    def keep_seen(self) -> bool:
        """Rank already-seen items too when the data has repeat consumption (> 5 % of validation targets were seen before).

        Excluding the history would make those targets unrankable (65 % of the synthetic default's), so
        the pipeline follows the data and records the choice in every run's metrics (`keep_seen`).
        """
        from easrec.train.evaluate import repeat_share

        split = self.data().split()
        flat, offsets = split.history("valid")
        return repeat_share(flat, offsets, split.valid_targets) > 0.05

    def train_config(self):
        from easrec.train.trainer import TrainConfig

        return TrainConfig(epochs=self.preset.epochs, patience=self.preset.patience, lr=self.preset.lr, seed=self.opts.seed,
                           batch_size=self.preset.batch_size, targets=self.preset.targets,
                           keep_seen=self.keep_seen())

    def stage_baseline(self) -> dict:
        from easrec.train.run import train_run

        resume = (self.out / "baseline" / "checkpoint.pt").exists()
        metrics = train_run(self.data(), self.data_cfg(), self.baseline_arch, self.train_config(), self.out / "baseline",
                            resume=resume)
        return {"test": metrics["test"], "train_seconds": metrics["train_seconds"]}

    def lut_cache_path(self, device, n_items: int) -> tuple[Path, dict[str, Any]]:
        """The cache file for this device's table and the fingerprint it must carry.

        The key is the full device fingerprint (cpu, cores, os, machine, gpu, ...), runtime and its
        version, dtype, threads, search space, catalogue size and the baseline (measured as an extra).
        """
        from easrec.profiling.lut import device_fingerprint

        fp = device_fingerprint(device.info(), self.opts.runtime, LUT_DTYPE)
        fp["threads"] = self.opts.threads
        key_obj = {"device": {k: fp.get(k) for k in cache_fields()}, "space": self.space.hash(), "n_items": n_items,
                   "baseline": self.baseline_arch.hash()}
        key = hashlib.sha1(json.dumps(key_obj, sort_keys=True, default=str).encode()).hexdigest()[:16]
        return lut_cache_dir(self.opts) / f"{self.opts.runtime}-{LUT_DTYPE}-{key}.json", fp

    def _cached_lut_problem(self, cache: Path, fp: dict[str, Any], n_items: int) -> str | None:
        """Why the cached table cannot be resumed or reused here (None: it can)."""
        from easrec.profiling.lut import LatencyTable

        try:
            stored = LatencyTable.load(cache, complete=False)
        except EasrecError as exc:
            return str(exc)
        if stored.data["space_hash"] != self.space.hash():
            return f"field 'space' is {stored.data['space_hash']}, this run searches {self.space.hash()}"
        if stored.n_items != n_items:
            return f"field 'n_items' is {stored.n_items}, this data has {n_items}"
        return fingerprint_mismatch(stored.device, fp, cache_fields())

    def stage_profile(self) -> dict:
        from easrec.profiling.lut import LatencyTable, build_lut
        from easrec.profiling.protocol import Settings
        from easrec.profiling.validate import validate_lut

        device = self.device()
        n_items = self.data().n_items
        cache, fp = self.lut_cache_path(device, n_items)
        cache.parent.mkdir(parents=True, exist_ok=True)
        reused = False
        if cache.exists():
            problem = self._cached_lut_problem(cache, fp, n_items)
            if problem:
                # Set aside rather than delete: the table may be someone's measurement of another machine.
                aside = cache.with_name(f"{cache.stem}.mismatch-{int(time.time())}.json")
                log.warning("%s: not reused (%s); measuring again, the old file is kept as %s", cache, problem, aside.name)
                cache.replace(aside)
            else:
                try:
                    table = LatencyTable.load(cache, space=self.space, device_info=fp)
                    reused = table.data.get("validation") is not None
                except EasrecError as exc:
                    log.info("%s: resuming an unfinished table (%s)", cache, exc)
        if not reused:
            settings = Settings(max_seconds=self.preset.profile_max_seconds)
            build_lut(device, self.space, self.opts.runtime, LUT_DTYPE, n_items, self.opts.threads, cache,
                      settings=settings, extra=[self.baseline_arch])
            validate_lut(cache, device, self.preset.validate_subnets, settings=Settings(max_seconds=self.preset.profile_max_seconds))
        shutil.copyfile(cache, self.out / "lut.json")
        table = LatencyTable.load(self.out / "lut.json", space=self.space, device_info=fp)
        val = table.data.get("validation") or {}
        return {"lut": str(cache), "reused": reused, "entries": len(table.entries),
                "validation": {k: v for k, v in (val.get("lut") or {}).get("test", {}).items()} if val else None}

    def stage_search(self) -> dict:
        from easrec.profiling.lut import LatencyTable
        from easrec.search.gates import GatesConfig
        from easrec.search.run import resolve_budget, search_run

        table = LatencyTable.load(self.out / "lut.json", space=self.space)
        # The baseline is costed by the same corrected table the search ranks subnets with: ratio 1.0 is its prediction.
        reference_ms = table.cost(self.baseline_arch)
        budget = resolve_budget(table, ratio=self.opts.budget_ratio, reference=self.baseline_arch)
        gcfg = GatesConfig(epochs=self.preset.search_epochs, lr=self.preset.lr, seed=self.opts.seed, keep_seen=self.keep_seen())
        metrics = search_run(self.data(), self.data_cfg(), self.out, cost_model=table, budget=budget, gates_cfg=gcfg,
                             finetune=self.train_config(), resume=(self.out / "search_checkpoint.pt").exists(),
                             reference=self.baseline_arch, finalist_epochs=self.preset.finalist_epochs)
        return {"arch": metrics["arch_description"], "predicted_ms": metrics["predicted_cost"], "budget_ms": budget,
                "baseline_predicted_ms": reference_ms, "test": metrics["test"]}

    def artifacts(self) -> list[tuple[str, Path, str, str]]:
        """(model, run dir, quantize, file) for every artifact the run ships."""
        ext = ".pte" if self.opts.runtime == "executorch" else ".onnx"
        out = []
        for model, run in (("baseline", self.out / "baseline"), ("subnet", self.out)):
            for q in ("none", "int8"):
                name = f"{model}{'' if q == 'none' else '-' + q}{ext}"
                out.append((model, run, q, self.out / "artifacts" / name))
        return out

    def stage_export(self) -> dict:
        from easrec.export import export_run

        fmt = "executorch" if self.opts.runtime == "executorch" else "onnx"
        rows = []
        for model, run, q, path in self.artifacts():
            path.parent.mkdir(parents=True, exist_ok=True)
            rep = export_run(run, fmt=fmt, out=path, quantize=q, threads=self.opts.threads)
            par = rep.get("parity", {})
            rows.append(ArtifactRecord(model=model, path=str(path), format=fmt, quantize=q,
                                       size_bytes=path.stat().st_size, parity=par))
        self.run_dir.write_records(ARTIFACTS, rows)
        return {"artifacts": len(rows), "parity_passed": all(r.parity.get("passed", True) for r in rows)}

    def stage_bench(self) -> dict:
        from easrec.export.bench import bench_artifact

        device = self.device()
        rows = []
        for model, _, q, path in self.artifacts():
            res = bench_artifact(path, device, runs=self.preset.bench_runs, threads=self.opts.threads)
            rows.append(BenchRecord.from_dict({"model": model, "quantize": q, **res}, BENCH))
        self.run_dir.write_records(BENCH, rows)
        sub, base = self.run_dir.measured_ms("subnet"), self.run_dir.measured_ms("baseline")
        check = self.run_dir.budget_check()
        return {"subnet_ms": sub, "baseline_ms": base, "speedup": base / sub,
                "budget_ms": check["budget_ms"], "measured_over_budget": check["measured_over_budget"],
                "measured_ratio_over_budget_ratio": check["measured_ratio_over_budget_ratio"]}

    def stage_energy(self) -> dict:
        from easrec.profiling.energy import artifact_inputs, measure_energy

        device = self.device()
        rows = []
        for model, _, q, path in self.artifacts():
            if q != "none" and model == "baseline":
                continue
            res = measure_energy(path, artifact_inputs(path), device, self.preset.energy_runs,
                                 threads=self.opts.threads, min_seconds=self.preset.energy_seconds)
            rows.append(EnergyRecord.from_dict({"model": model, "quantize": q, "artifact": str(path), **res.to_dict()}, ENERGY))
        self.run_dir.write_records(ENERGY, rows)
        return {r.model + ("-int8" if r.quantize != "none" else ""): r.mj_per_inference for r in rows}

    def stage_report(self) -> dict:
        from easrec.profiling.report import write_report

        html, md = write_report(self.out, baseline_run=self.out / "baseline")
        return {"html": str(html), "md": str(md)}

    # ---------------------------------------------------------------- summary

    def summary(self) -> dict[str, Any]:
        """The numbers a person wants at the end: accuracy, latency, energy, size of baseline and subnet."""
        return self.run_dir.summary({k: v.get("seconds") for k, v in self.state["stages"].items()})
