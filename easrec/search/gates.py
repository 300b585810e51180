"""EASRec's search: architecture parameters per elastic choice, trained with the supernet's weights
under a dynamic resource constraint whose cost comes from a `CostModel` (FLOPs or a measured LUT).

Relaxation. Heads, FFN widths and depth are mixed softly (DARTS): a head or neuron is scaled by the
probability that the chosen width keeps it, and the outputs after each block are mixed by the depth
probabilities, so one forward pass computes the expectation. Sequence length, width d and the
attention kind change tensor shapes, so they are sampled from softmax(α/τ) each step and receive
gradients through a straight-through factor (GDAS). τ is annealed from 1 to 0.01.

Constraint (DESIGN.md, Search). `dynamic`: penalty λ·max(0, E[c]/T_t − 1) where the target T_t
tightens from the full model's cost to the budget T during warm-up and λ follows dual ascent (grows
while over budget, decays when under). `paper`: the paper's fixed λ = 0.01 on normalised FLOPs,
scaled by the most likely depth / max depth. Either way the argmax architecture is finally projected
onto the budget (cheapest-loss reductions) so the returned architecture never exceeds it.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from easrec.cost import ArchProbs, CostModel
from easrec.data import Split
from easrec.errors import EasrecError
from easrec.model import SoftChoice, Supernet
from easrec.space import Arch, LayerArch, SearchSpace
from easrec.train.checkpoint import load_torch, save_torch
from easrec.train.trainer import length_bucketed_batches, set_determinism

log = logging.getLogger(__name__)

SEARCH_CHECKPOINT = "search_checkpoint.pt"


@dataclass
class GatesConfig:
    """Options of the gates search."""

    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.01
    arch_lr: float = 0.05
    arch_every: int = 1
    tau_start: float = 1.0
    tau_end: float = 0.01
    warmup_frac: float = 0.4
    constraint: str = "dynamic"
    lambda_init: float = 0.5
    dual_lr: float = 0.5
    paper_lambda: float = 0.01
    seed: int = 0
    threads: int | None = None


class ArchParams(nn.Module):
    """α for every elastic choice of a search space."""

    def __init__(self, space: SearchSpace):
        super().__init__()
        self.space = space
        n = space.depths[-1]
        self.max_len = nn.Parameter(torch.zeros(len(space.max_lens)))
        self.d = nn.Parameter(torch.zeros(len(space.ds)))
        self.depth = nn.Parameter(torch.zeros(len(space.depths)))
        self.attention = nn.Parameter(torch.zeros(len(space.attentions)))
        self.heads = nn.ParameterList(nn.Parameter(torch.zeros(len(space.heads))) for _ in range(n))
        self.ffn = nn.ParameterList(nn.Parameter(torch.zeros(len(space.ffns))) for _ in range(n))

    def probs(self, tau: float) -> ArchProbs:
        """softmax(α/τ) for every choice."""
        sm = lambda a: F.softmax(a / tau, dim=0)  # noqa: E731
        return ArchProbs(sm(self.max_len), sm(self.d), sm(self.depth), sm(self.attention),
                         [sm(h) for h in self.heads], [sm(f) for f in self.ffn])

    def argmax(self) -> Arch:
        """The most likely architecture."""
        sp = self.space
        depth = sp.depths[int(self.depth.argmax())]
        layers = tuple(LayerArch(sp.heads[int(self.heads[i].argmax())], sp.ffns[int(self.ffn[i].argmax())]) for i in range(depth))
        return Arch(sp.max_lens[int(self.max_len.argmax())], sp.ds[int(self.d.argmax())], layers,
                    sp.attentions[int(self.attention.argmax())], sp.gates, sp.head_size)

    def snapshot(self) -> dict:
        """Current α as plain lists (for the search log)."""
        return {name: p.detach().tolist() for name, p in self.named_parameters()}


def keep_probability(p: torch.Tensor, widths: tuple[int, ...], unit: int = 1) -> torch.Tensor:
    """P(unit j is kept) = Σ over candidate widths w > j of p(w), for j < max width (cumulative mask)."""
    max_w = widths[-1] // unit
    j = torch.arange(max_w)
    keep = torch.stack([(j < w // unit).to(p.dtype) for w in widths])  # [choices, max_w]
    return p @ keep


def budget_feasibility(cost_model: CostModel, budget: float) -> None:
    """Refuse a budget below the cheapest architecture of the space, naming the smallest feasible figure."""
    smallest = cost_model.cheapest()
    floor = cost_model.cost(smallest)
    if budget < floor:
        raise EasrecError(
            f"budget {budget:.4g} {cost_model.unit} is infeasible: the smallest architecture in the search space "
            f"({smallest.describe()}) costs {floor:.4g} {cost_model.unit}"
        )


def project_to_budget(arch: Arch, alpha: ArchParams, cost_model: CostModel, budget: float) -> Arch:
    """Shrink `arch` one choice at a time, each time taking the step that loses least log-probability per unit of cost saved, until it fits."""
    sp = cost_model.space
    logp = {k: F.log_softmax(v.detach(), 0) for k, v in (("max_len", alpha.max_len), ("d", alpha.d), ("depth", alpha.depth), ("attention", alpha.attention))}

    def score(a: Arch) -> float:
        s = logp["max_len"][sp.max_lens.index(a.max_len)] + logp["d"][sp.ds.index(a.d)]
        s = s + logp["depth"][sp.depths.index(a.depth)] + logp["attention"][sp.attentions.index(a.attention)]
        for i, layer in enumerate(a.layers):
            s = s + F.log_softmax(alpha.heads[i].detach(), 0)[sp.heads.index(layer.heads)]
            s = s + F.log_softmax(alpha.ffn[i].detach(), 0)[sp.ffns.index(layer.ffn)]
        return float(s)

    def smaller(a: Arch) -> list[Arch]:
        out = []
        for field_name, values in (("max_len", sp.max_lens), ("d", sp.ds)):
            i = values.index(getattr(a, field_name))
            if i > 0:
                out.append(Arch(**{**a.__dict__, field_name: values[i - 1]}))
        if a.attention == "softmax" and "linear" in sp.attentions:
            out.append(Arch(**{**a.__dict__, "attention": "linear"}))
        if sp.depths.index(a.depth) > 0:
            out.append(Arch(**{**a.__dict__, "layers": a.layers[: sp.depths[sp.depths.index(a.depth) - 1]]}))
        for i, layer in enumerate(a.layers):
            for attr, values in (("heads", sp.heads), ("ffn", sp.ffns)):
                j = values.index(getattr(layer, attr))
                if j > 0:
                    layers = list(a.layers)
                    layers[i] = LayerArch(**{**layer.__dict__, attr: values[j - 1]})
                    out.append(Arch(**{**a.__dict__, "layers": tuple(layers)}))
        return out

    current, c = arch, cost_model.cost(arch)
    while c > budget:
        options = [(a, cost_model.cost(a)) for a in smaller(current)]
        options = [(a, ca) for a, ca in options if ca < c]
        if not options:
            raise EasrecError(f"cannot bring {current.describe()} under the budget {budget:.4g} {cost_model.unit}")
        base = score(current)
        current, c = min(options, key=lambda o: (base - score(o[0])) / (c - o[1]))
    if current != arch:
        log.info("projected %s onto the budget: %s (%.4g %s)", arch.describe(), current.describe(), c, cost_model.unit)
    return current


def _sample(p: torch.Tensor, gen: torch.Generator) -> int:
    return int(torch.multinomial(p.detach(), 1, generator=gen))


def last_position_loss(model: Supernet, ids: torch.Tensor, targets: torch.Tensor, active: Arch, soft: SoftChoice) -> torch.Tensor:
    """Cross-entropy of the next item after each sequence's newest item (used on validation batches for α)."""
    h = model.encode(ids, active, soft=soft)[:, -1]
    logits = h @ model.item_weights(active).t()
    logits[:, 0] = -1e4
    return F.cross_entropy(logits, targets)


@dataclass
class SearchResult:
    """The architecture found and how the search got there."""

    arch: Arch
    argmax_arch: Arch
    expected_cost: float
    predicted_cost: float
    search_seconds: float
    log: list[dict] = field(default_factory=list)


def gates_search(
    supernet: Supernet,
    split: Split,
    cost_model: CostModel,
    budget: float,
    cfg: GatesConfig,
    out_dir: Path | None = None,
    *,
    resume: bool = False,
    on_epoch: Callable[[dict], None] | None = None,
) -> SearchResult:
    """Train the supernet's weights and α jointly under the resource constraint; return the chosen architecture."""
    if cfg.constraint not in ("dynamic", "paper"):
        raise EasrecError(f"--constraint must be dynamic or paper, got {cfg.constraint!r}")
    budget_feasibility(cost_model, budget)
    set_determinism(cfg.seed, cfg.threads)
    space = supernet.space
    alpha = ArchParams(space)
    L_max = space.max_lens[-1]
    train_x, train_y = (torch.from_numpy(a) for a in split.train_arrays(L_max))
    val_x, val_y = (torch.from_numpy(a) for a in split.eval_arrays("valid", L_max))
    lengths = (train_x != 0).sum(1)
    val_lengths = (val_x != 0).sum(1)
    w_opt = torch.optim.AdamW(supernet.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    a_opt = torch.optim.Adam(alpha.parameters(), lr=cfg.arch_lr, betas=(0.5, 0.999))
    gen = torch.Generator().manual_seed(cfg.seed)
    full_cost = cost_model.cost(space.largest())
    steps_per_epoch = math.ceil(len(train_x) / cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    warmup = max(1, int(cfg.warmup_frac * total_steps))
    state = {"epoch": 0, "step": 0, "lam": cfg.lambda_init, "log": [], "seconds": 0.0}
    ckpt = Path(out_dir) / SEARCH_CHECKPOINT if out_dir else None
    if resume and ckpt and ckpt.exists():
        saved = load_torch(ckpt)
        if saved.get("space") != space.to_dict():
            raise EasrecError(f"{ckpt}: search checkpoint is for another search space (field 'space')")
        supernet.load_state_dict(saved["supernet"])
        alpha.load_state_dict(saved["alpha"])
        w_opt.load_state_dict(saved["w_opt"])
        a_opt.load_state_dict(saved["a_opt"])
        gen.set_state(saved["generator"])
        state = saved["state"]
        log.info("resumed search at epoch %d", state["epoch"])

    def tau_at(step: int) -> float:
        return cfg.tau_start * (cfg.tau_end / cfg.tau_start) ** min(1.0, step / max(1, total_steps - 1))

    def target_at(step: int) -> float:
        # Geometric interpolation from the full model's cost down to the budget over the warm-up.
        frac = min(1.0, step / warmup)
        return full_cost * (budget / full_cost) ** frac

    def step_forward(x: torch.Tensor, y: torch.Tensor | None, tau: float, last_only_targets: torch.Tensor | None = None):
        probs = alpha.probs(tau)
        li, di, ki = _sample(probs.max_len, gen), _sample(probs.d, gen), _sample(probs.attention, gen)
        depth = space.depths[-1]
        active = Arch(space.max_lens[li], space.ds[di], (LayerArch(space.heads[-1], space.ffns[-1]),) * depth,
                      space.attentions[ki], space.gates, space.head_size)
        p_depth = torch.zeros(depth, dtype=probs.depth.dtype)
        for j, n in enumerate(space.depths):
            p_depth = p_depth + probs.depth[j] * F.one_hot(torch.tensor(n - 1), depth).to(p_depth.dtype)
        soft = SoftChoice(
            head_weights=[keep_probability(probs.heads[i], space.heads) for i in range(depth)],
            ffn_weights=[keep_probability(probs.ffn[i], space.ffns) for i in range(depth)],
            depth_weights=p_depth,
        )
        # Straight-through factor: 1 in value, carries d(loss)/d(p) for the sampled shape choices.
        st = 1.0
        for p, i in ((probs.max_len, li), (probs.d, di), (probs.attention, ki)):
            st = st * (1.0 + p[i] - p[i].detach())
        if last_only_targets is not None:
            loss = last_position_loss(supernet, x, last_only_targets, active, soft) * st
        else:
            loss = supernet.loss(x, y, active, soft=soft) * st
        return loss, probs

    while state["epoch"] < cfg.epochs:
        epoch_start = time.perf_counter()
        supernet.train()
        losses = []
        for idx in length_bucketed_batches(lengths, cfg.batch_size, gen):
            step = state["step"]
            tau = tau_at(step)
            width = int(lengths[idx].max())
            loss, _ = step_forward(train_x[idx, -width:], train_y[idx, -width:], tau)
            w_opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(supernet.parameters(), 1.0)
            w_opt.step()
            losses.append(loss.item())
            if step % cfg.arch_every == 0:
                vi = torch.randint(0, len(val_x), (cfg.batch_size,), generator=gen)
                v_width = int(val_lengths[vi].max())
                v_loss, probs = step_forward(val_x[vi, -v_width:], None, tau, last_only_targets=val_y[vi])
                exp_cost = cost_model.expected_cost(probs)
                target = target_at(step)
                if cfg.constraint == "dynamic":
                    violation = exp_cost / target - 1.0
                    penalty = state["lam"] * torch.clamp(violation, min=0.0)
                else:
                    depth_scale = space.depths[int(probs.depth.argmax())] / space.depths[-1]
                    penalty = cfg.paper_lambda * depth_scale * exp_cost / full_cost
                    violation = exp_cost / budget - 1.0
                a_opt.zero_grad(set_to_none=True)
                supernet.zero_grad(set_to_none=True)
                (v_loss + penalty).backward()
                a_opt.step()
                if cfg.constraint == "dynamic":
                    # Dual ascent: λ rises while the expected cost is over the target, decays when under.
                    state["lam"] = max(0.0, state["lam"] + cfg.dual_lr * float(violation.detach()))
                if step % 5 == 0:
                    state["log"].append({"step": step, "epoch": state["epoch"], "tau": tau, "lambda": state["lam"],
                                         "expected_cost": float(exp_cost.detach()), "target": target,
                                         "val_loss": float(v_loss.detach()), "alpha": alpha.snapshot()})
            state["step"] += 1
        state["epoch"] += 1
        state["seconds"] += time.perf_counter() - epoch_start
        record = {"epoch": state["epoch"], "loss": float(np.mean(losses)), "lambda": state["lam"],
                  "expected_cost": state["log"][-1]["expected_cost"] if state["log"] else float("nan"),
                  "arch": alpha.argmax().describe(), "seconds": time.perf_counter() - epoch_start}
        if ckpt:
            save_torch({"space": space.to_dict(), "supernet": supernet.state_dict(), "alpha": alpha.state_dict(),
                        "w_opt": w_opt.state_dict(), "a_opt": a_opt.state_dict(), "generator": gen.get_state(),
                        "state": state}, ckpt)
        if on_epoch:
            on_epoch(record)
    argmax = alpha.argmax()
    arch = project_to_budget(argmax, alpha, cost_model, budget)
    with torch.no_grad():
        final_expected = float(cost_model.expected_cost(alpha.probs(tau_at(total_steps))))
    return SearchResult(arch=arch, argmax_arch=argmax, expected_cost=final_expected,
                        predicted_cost=cost_model.cost(arch), search_seconds=state["seconds"], log=state["log"])


def write_search_log(path: Path, entries: list[dict]) -> None:
    """The α / λ / expected-cost trace, one JSON object per line."""
    from easrec.errors import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(e) + "\n" for e in entries))


def config_dict(cfg: GatesConfig) -> dict:
    """JSON-able config."""
    return asdict(cfg)
