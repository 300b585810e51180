"""`easrec search` as a library call: budget → supernet search → subnet → fine-tune → run directory."""

from __future__ import annotations

import logging
import resource
import time
from pathlib import Path
from typing import Callable

import torch

from easrec.cost import CostModel
from easrec.cost.flops import FlopsCostModel
from easrec.data import Dataset
from easrec.errors import EasrecError
from easrec.model import SASRec, Supernet
from easrec.model.sasrec import DEFAULT_DROPOUT
from easrec.search.finalists import choose_finalist, finalists
from easrec.search.gates import GatesConfig, config_dict, gates_search, write_search_log
from easrec.space import Arch, SearchSpace, reference_arch
from easrec.train.run import test_metrics, write_run
from easrec.train.trainer import TrainConfig, train_model

log = logging.getLogger(__name__)

UNIT_FLAGS = {"ms": "--budget-ms", "MFLOPs": "--budget-mflops", "mJ": "--budget-mj"}


def load_cost_model(space: SearchSpace | None, n_items: int, lut: Path | None, *, gates: bool | None = None,
                    gate_input: str | None = None) -> CostModel:
    """The measured LUT when given (in its own space, or checked against `space`), else analytic FLOPs over `space`.

    `gates` switches the space's gates (the `--no-gates` ablation). A LUT measured for a gated space
    serves the ungated one too: gates are measured as what they add to the ungated FFN, whose
    entries are therefore in the table. `gate_input` sets what the gates read; a LUT's gates were
    measured with one input, so there it must be the table's.
    """
    import dataclasses

    if lut is None:
        space = space or SearchSpace()
        if gates is not None and space.gates != gates:
            space = dataclasses.replace(space, gates=gates)
        if gate_input is not None and space.gate_input != gate_input:
            space = dataclasses.replace(space, gate_input=gate_input)
        return FlopsCostModel(space, n_items)
    from easrec.profiling.lut import LatencyTable

    table = LatencyTable.load(lut, space=space)
    if gate_input is not None and table.space.gate_input != gate_input:
        raise EasrecError(f"{lut}: field 'space.gate_input' is {table.space.gate_input!r} but --gate-input is {gate_input!r}; "
                          "profile a space with that gate input (--space) or drop --gate-input")
    if gates is not None and table.space.gates != gates:
        switched = dataclasses.replace(table.space, gates=gates)
        missing = table.missing(switched)
        if missing:
            raise EasrecError(f"{lut}: field 'space.gates' is {str(table.space.gates).lower()} and the table lacks entries of "
                              f"the space with gates {'on' if gates else 'off'} ({', '.join(missing[:3])}"
                              f"{' …' if len(missing) > 3 else ''}); profile that space with --space")
        table = LatencyTable({**table.data, "space": switched.to_dict(), "space_hash": switched.hash()}, source=table.source)
    lut_items = getattr(table, "n_items", None)
    if lut_items is not None and lut_items != n_items:
        log.warning("%s was measured for %d items, the data has %d: scoring cost is extrapolated", lut, lut_items, n_items)
    return table


def resolve_budget(cost_model: CostModel, *, ratio: float | None = None, value: float | None = None, unit: str | None = None,
                   reference: Arch | None = None) -> float:
    """A budget in the cost model's unit: `ratio` × the reference's cost, or an absolute `value` in `unit`.

    The reference (default: the reference SASRec) is costed by `cost_model.cost`, the same corrected
    prediction the search compares its candidates with, so ratio 1.0 is the reference's own cost.
    """
    if ratio is not None:
        if not ratio > 0:
            raise EasrecError(f"--budget-ratio must be positive, got {ratio}")
        reference = reference or reference_arch()
        try:
            reference_cost = cost_model.cost(reference)
        except EasrecError as exc:
            raise EasrecError(f"--budget-ratio: the budget reference {reference.describe()} has no cost: {exc}") from exc
        if not reference_cost > 0:
            raise EasrecError(f"--budget-ratio: the budget reference {reference.describe()} costs {reference_cost:.4g} "
                              f"{cost_model.unit}; a ratio of it is no budget")
        return ratio * reference_cost
    if value is None:
        raise EasrecError("give a budget: --budget-ratio, --budget-ms, --budget-mflops or --budget-mj")
    if unit != cost_model.unit:
        have = UNIT_FLAGS.get(cost_model.unit, cost_model.unit)
        raise EasrecError(f"{UNIT_FLAGS.get(unit, unit)} needs a cost model in {unit}, but this one is in {cost_model.unit} (use {have} or --budget-ratio)")
    return value


def search_run(
    dataset: Dataset,
    data_cfg: dict,
    out: Path,
    *,
    cost_model: CostModel,
    budget: float,
    gates_cfg: GatesConfig,
    finetune: TrainConfig,
    retrain: str = "inherit",
    dropout: float = DEFAULT_DROPOUT,
    resume: bool = False,
    on_epoch: Callable[[str, dict], None] | None = None,
    extra_config: dict | None = None,
    reference: Arch | None = None,
    finalist_epochs: int = 2,
) -> dict:
    """Search, fine-tune (or retrain from scratch) the chosen subnet, evaluate, and write the run directory.

    With `finalist_epochs` > 0 the α choice competes with the SASRec shapes that fit (costliest, widest)
    (`easrec.search.finalists`): each is fine-tuned that many epochs and the best on validation is kept.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if retrain not in ("inherit", "scratch"):
        raise EasrecError(f"--retrain must be inherit or scratch, got {retrain!r}")
    if finalist_epochs < 0:
        raise EasrecError(f"--finalist-epochs must be at least 0, got {finalist_epochs}")
    space = cost_model.space
    torch.manual_seed(gates_cfg.seed)
    supernet = Supernet(space, dataset.n_items, dropout)
    split = dataset.split()
    t0 = time.perf_counter()
    result = gates_search(supernet, split, cost_model, budget, gates_cfg, out, resume=resume,
                          on_epoch=(lambda r: on_epoch("search", r)) if on_epoch else None)
    write_search_log(out / "search_log.jsonl", result.log)
    arch = result.arch
    finalist_rows: list[dict] = []
    if finalist_epochs > 0:
        t_final = time.perf_counter()
        arch, finalist_rows = choose_finalist(supernet, split, finalists(arch, cost_model, budget), finetune, finalist_epochs,
                                              cost_model, out, on_epoch=(lambda r: on_epoch("finalists", r)) if on_epoch else None)
        log.info("finalists scored in %.0f s", time.perf_counter() - t_final)
    log.info("chosen %s: %.4g %s (budget %.4g)", arch.describe(), cost_model.cost(arch), cost_model.unit, budget)
    if retrain == "inherit":
        model = supernet.extract(arch)
    else:
        torch.manual_seed(finetune.seed)
        model = SASRec(arch, dataset.n_items, dropout)
    ft_dir = out / "finetune"
    ft_dir.mkdir(exist_ok=True)
    ft = train_model(model, split, finetune, ft_dir, resume=resume and (ft_dir / "checkpoint.pt").exists(),
                     on_epoch=(lambda r: on_epoch("finetune", r)) if on_epoch else None)
    total_seconds = time.perf_counter() - t0
    reference_cost = cost_model.cost(reference or reference_arch())
    metrics = {
        "valid": ft.best_valid,
        **test_metrics(model, dataset, finetune.keep_seen),
        "protocol": "full",
        "keep_seen": finetune.keep_seen,
        "arch": arch.to_dict(),
        "arch_description": arch.describe(),
        "argmax_arch": result.argmax_arch.to_dict(),
        "budget": budget,
        "unit": cost_model.unit,
        "predicted_cost": cost_model.cost(arch),
        "expected_cost_at_end": result.expected_cost,
        "budget_used": cost_model.cost(arch) / budget,
        "candidates": result.candidates,
        "alpha_arch": result.arch.to_dict(),
        "finalists": finalist_rows,
        "finalist_epochs": finalist_epochs,
        "finalist_seconds": sum(r.get("seconds", 0.0) for r in finalist_rows),
        "search_steps": result.steps,
        "alpha_entropy_at_end": result.final_entropy,
        "reference_cost": reference_cost,
        "cost_ratio": cost_model.cost(arch) / reference_cost,
        "cost_breakdown": cost_model.breakdown(arch),
        "search_seconds": result.search_seconds,
        "finetune_seconds": ft.train_seconds,
        "total_seconds": total_seconds,
        "epoch_seconds": ft.epoch_seconds,
        "train_seconds": ft.train_seconds,
        "best_epoch": ft.best_epoch,
        "params": sum(p.numel() for p in model.parameters()),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "strategy": "gates",
        "constraint": gates_cfg.constraint,
        "retrain": retrain,
    }
    if cost_model.unit == "ms":
        metrics["predicted_ms"] = cost_model.cost(arch)
    write_run(out, model, dataset, data_cfg, finetune, metrics,
              {"dropout": dropout, "search": config_dict(gates_cfg), "space": space.to_dict(),
               "cost_model": getattr(cost_model, "fingerprint", lambda: {})(), **(extra_config or {})})
    return metrics
