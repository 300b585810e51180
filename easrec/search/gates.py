"""EASRec's search: architecture parameters per elastic choice, trained with the supernet's weights
under a dynamic resource constraint whose cost comes from a `CostModel` (FLOPs or a measured LUT).

Relaxation. Heads, FFN widths and depth are mixed softly (DARTS): a head or neuron is scaled by the
probability that the chosen width keeps it, and the outputs after each block are mixed by the depth
probabilities, so one forward pass computes the expectation. Sequence length, width d and the
attention kind change tensor shapes: weight steps sample one of them from softmax(α/τ); α steps run
two paths that differ in one of them and mix their predictive distributions (`gates_search`), so
every choice gets a gradient that compares candidates. τ is annealed from 1 to 0.01 over the search.

Constraint (README.md, "How the search works"). `dynamic`: penalty λ·max(0, E[c]/T_t − 1) where the target T_t
tightens from the full model's cost to the budget T during warm-up and λ follows dual ascent (grows
while over budget, decays when under). `paper`: the paper's fixed λ = 0.01 on normalised FLOPs,
scaled by the most likely depth / max depth. Either way the result is the most probable
architecture within the budget, found exactly (`easrec.search.projection`), or a larger one that
spends the budget when it validates better, so the returned architecture never exceeds the budget.
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
from easrec.io import atomic_write_text
from easrec.model import SoftChoice, Supernet
from easrec.search.projection import ChoiceLogProbs, grow_within, most_probable_within
from easrec.space import Arch, LayerArch, SearchSpace
from easrec.train.checkpoint import load_torch, save_torch
from easrec.train.evaluate import evaluate_model
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
    arch_start_frac: float = 0.2
    constraint: str = "dynamic"
    lambda_init: float = 0.5
    dual_lr: float = 0.5
    paper_lambda: float = 0.01
    fill: float = 0.9
    keep_seen: bool = False  # the evaluation protocol the candidates are compared under
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
                    sp.attentions[int(self.attention.argmax())], sp.gates, sp.head_size, sp.gate_input)

    def log_probs(self) -> ChoiceLogProbs:
        """log softmax(α) of every choice, for the exact projection onto a budget."""
        return ChoiceLogProbs.from_logits(self.max_len, self.d, self.depth, self.attention, list(self.heads), list(self.ffn))

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
    if not budget >= floor:
        raise EasrecError(
            f"budget {budget:.4g} {cost_model.unit} is infeasible: the smallest architecture in the search space "
            f"({smallest.describe()}) costs {floor:.4g} {cost_model.unit}"
        )


def project_to_budget(alpha: "ArchParams", cost_model: CostModel, budget: float) -> Arch:
    """The most probable architecture under α whose predicted cost is within `budget` (exact; see projection.py)."""
    return most_probable_within(cost_model, alpha.log_probs(), budget)


def _sample(p: torch.Tensor, gen: torch.Generator) -> int:
    return int(torch.multinomial(p.detach(), 1, generator=gen))


def _sample_other(p: torch.Tensor, exclude: int, gen: torch.Generator) -> int:
    """A candidate other than `exclude`, drawn in proportion to p (uniformly when p has no mass left there)."""
    q = p.detach().clone()
    q[exclude] = 0.0
    if not float(q.sum()) > 1e-12:
        q = torch.ones_like(q)
        q[exclude] = 0.0
    return int(torch.multinomial(q, 1, generator=gen))


def last_position_logprob(model: Supernet, ids: torch.Tensor, targets: torch.Tensor, active: Arch, soft: SoftChoice) -> torch.Tensor:
    """log p(next item = target) after each sequence's newest item, per sequence [B]."""
    h = model.encode(ids, active, soft=soft)[:, -1]
    logits = h @ model.item_weights(active).t()
    logits[:, 0] = -1e4
    return F.log_softmax(logits, dim=-1).gather(1, targets.view(-1, 1)).squeeze(1)


def choice_entropy(probs: ArchProbs) -> float:
    """Sum of the entropies (nats) of every choice's distribution: 0 when the search has decided everything."""
    ps = [probs.max_len, probs.d, probs.depth, probs.attention, *probs.heads, *probs.ffn]
    return float(sum(-(p * p.clamp_min(1e-12).log()).sum() for p in ps).detach())


@dataclass
class SearchResult:
    """The architecture found and how the search got there."""

    arch: Arch
    argmax_arch: Arch
    expected_cost: float
    predicted_cost: float
    search_seconds: float
    log: list[dict] = field(default_factory=list)
    candidates: list[dict] = field(default_factory=list)
    steps: int = 0
    final_entropy: float = 0.0


SHAPE_CHOICES = ("max_len", "d", "attention")


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
    """Train the supernet's weights and α jointly under the resource constraint; return the chosen architecture.

    α gradients. Heads, FFN width and depth are relaxed (one pass computes the expectation). Sequence
    length, width and attention kind change tensor shapes, so each α step runs two whole paths that
    differ in one of them (the other choices shared) and mixes their *predictive distributions* with
    weights softmax(α/τ) restricted to the two candidates (ProxylessNAS's two-path estimator): the
    gradient on α then says which of the two candidates explains the held-out next item better,
    instead of the loss-times-straight-through factor, whose gradient is the loss value whatever the choice.
    """
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
        if "torch_rng" in saved:  # dropout draws: without them a resumed search differs from an uninterrupted one
            torch.set_rng_state(saved["torch_rng"])
        state = saved["state"]
        log.info("resumed search at epoch %d", state["epoch"])
    shape_dims = [name for name, values in (("max_len", space.max_lens), ("d", space.ds), ("attention", space.attentions))
                  if len(values) > 1]

    def tau_at(step: int) -> float:
        return cfg.tau_start * (cfg.tau_end / cfg.tau_start) ** min(1.0, step / max(1, total_steps - 1))

    def target_at(step: int) -> float:
        # Geometric interpolation from the full model's cost down to the budget over the warm-up.
        frac = min(1.0, step / warmup)
        return full_cost * (budget / full_cost) ** frac

    def soft_choice(probs: ArchProbs) -> SoftChoice:
        depth = space.depths[-1]
        p_depth = torch.zeros(depth, dtype=probs.depth.dtype)
        for j, n in enumerate(space.depths):
            p_depth = p_depth + probs.depth[j] * F.one_hot(torch.tensor(n - 1), depth).to(p_depth.dtype)
        return SoftChoice(
            head_weights=[keep_probability(probs.heads[i], space.heads) for i in range(depth)],
            ffn_weights=[keep_probability(probs.ffn[i], space.ffns) for i in range(depth)],
            depth_weights=p_depth,
        )

    def active_arch(idx: dict[str, int]) -> Arch:
        layer = LayerArch(space.heads[-1], space.ffns[-1])
        return Arch(space.max_lens[idx["max_len"]], space.ds[idx["d"]], (layer,) * space.depths[-1],
                    space.attentions[idx["attention"]], space.gates, space.head_size, space.gate_input)

    def sample_path(probs: ArchProbs) -> dict[str, int]:
        return {name: _sample(getattr(probs, name), gen) for name in SHAPE_CHOICES}

    def weight_step(x: torch.Tensor, y: torch.Tensor, tau: float) -> float:
        with torch.no_grad():
            probs = alpha.probs(tau)
        loss = supernet.loss(x, y, active_arch(sample_path(probs)), soft=soft_choice(probs))
        w_opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(supernet.parameters(), 1.0)
        w_opt.step()
        return loss.item()

    def arch_step(x: torch.Tensor, y: torch.Tensor, tau: float, step: int) -> None:
        probs = alpha.probs(tau)
        soft = soft_choice(probs)
        path_a = sample_path(probs)
        if shape_dims:
            dim = shape_dims[int(torch.randint(len(shape_dims), (1,), generator=gen))]
            path_b = {**path_a, dim: _sample_other(getattr(probs, dim), path_a[dim], gen)}
            logw = F.log_softmax(getattr(alpha, dim)[[path_a[dim], path_b[dim]]] / tau, dim=0)
            lp_a = last_position_logprob(supernet, x, y, active_arch(path_a), soft)
            lp_b = last_position_logprob(supernet, x, y, active_arch(path_b), soft)
            v_loss = -torch.logsumexp(torch.stack([logw[0] + lp_a, logw[1] + lp_b]), dim=0).mean()
        else:
            v_loss = -last_position_logprob(supernet, x, y, active_arch(path_a), soft).mean()
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
        (v_loss + penalty).backward()
        a_opt.step()
        supernet.zero_grad(set_to_none=True)
        if cfg.constraint == "dynamic":
            # Dual ascent: λ rises while the expected cost is over the target, decays when under.
            state["lam"] = max(0.0, state["lam"] + cfg.dual_lr * float(violation.detach()))
        entry = {"step": step, "epoch": state["epoch"], "tau": tau, "lambda": state["lam"],
                 "expected_cost": float(exp_cost.detach()), "target": target,
                 "val_loss": float(v_loss.detach()), "entropy": choice_entropy(probs)}
        if step % 5 == 0:
            entry["alpha"] = alpha.snapshot()
        state["log"].append(entry)

    while state["epoch"] < cfg.epochs:
        epoch_start = time.perf_counter()
        supernet.train()
        losses = []
        for idx in length_bucketed_batches(lengths, cfg.batch_size, gen):
            step = state["step"]
            tau = tau_at(step)
            width = int(lengths[idx].max())
            losses.append(weight_step(train_x[idx, -width:], train_y[idx, -width:], tau))
            # α waits until the shared weights mean something: comparing two untrained paths only
            # locks in whichever one the first noisy steps happen to favour.
            if step % cfg.arch_every == 0 and step >= cfg.arch_start_frac * total_steps:
                vi = torch.randint(0, len(val_x), (cfg.batch_size,), generator=gen)
                v_width = int(val_lengths[vi].max())
                arch_step(val_x[vi, -v_width:], val_y[vi], tau, step)
            state["step"] += 1
        state["epoch"] += 1
        state["seconds"] += time.perf_counter() - epoch_start
        record = {"epoch": state["epoch"], "loss": float(np.mean(losses)), "lambda": state["lam"],
                  "expected_cost": state["log"][-1]["expected_cost"] if state["log"] else float("nan"),
                  "entropy": state["log"][-1]["entropy"] if state["log"] else float("nan"),
                  "arch": alpha.argmax().describe(), "seconds": time.perf_counter() - epoch_start}
        if ckpt:
            save_torch({"space": space.to_dict(), "supernet": supernet.state_dict(), "alpha": alpha.state_dict(),
                        "w_opt": w_opt.state_dict(), "a_opt": a_opt.state_dict(), "generator": gen.get_state(),
                        "torch_rng": torch.get_rng_state(), "state": state}, ckpt)
        if on_epoch:
            on_epoch(record)
    argmax = alpha.argmax()
    arch, candidates = choose_architecture(supernet, split, alpha, cost_model, budget, cfg.fill, cfg.keep_seen)
    with torch.no_grad():
        final_probs = alpha.probs(tau_at(total_steps))
        final_expected = float(cost_model.expected_cost(final_probs))
    return SearchResult(arch=arch, argmax_arch=argmax, expected_cost=final_expected,
                        predicted_cost=cost_model.cost(arch), search_seconds=state["seconds"], log=state["log"],
                        candidates=candidates, steps=state["step"], final_entropy=choice_entropy(final_probs))


def choose_architecture(supernet: Supernet, split: Split, alpha: ArchParams, cost_model: CostModel, budget: float,
                        fill: float, keep_seen: bool = False) -> tuple[Arch, list[dict]]:
    """The most probable architecture within the budget, or a grown one that spends ≥ `fill` of it if that validates better.

    Both candidates are scored on the validation split with the supernet's shared weights (no
    training), so spending the budget is kept only when the extra cost buys accuracy.
    """
    lp = alpha.log_probs()
    probable = most_probable_within(cost_model, lp, budget)
    candidates = [{"arch": probable, "why": "most probable within budget"}]
    if fill > 0:
        grown = grow_within(cost_model, lp, probable, budget, fill)
        if grown != probable:
            candidates.append({"arch": grown, "why": f"grown to spend >= {fill:.0%} of the budget"})
    if len(candidates) > 1:
        for c in candidates:
            c["valid_ndcg@10"] = evaluate_model(supernet, split, "valid", active=c["arch"], keep_seen=keep_seen)["ndcg@10"]
        best = max(candidates, key=lambda c: c["valid_ndcg@10"])
    else:
        best = candidates[0]
    rows = [{**c, "arch": c["arch"].describe(), "cost": cost_model.cost(c["arch"]), "log_p": lp.score(cost_model.space, c["arch"]),
             "chosen": c is best} for c in candidates]
    log.info("chosen %s (%s)", best["arch"].describe(), best["why"])
    return best["arch"], rows


def write_search_log(path: Path, entries: list[dict]) -> None:
    """The α / λ / expected-cost trace, one JSON object per line."""
    atomic_write_text(path, "".join(json.dumps(e) + "\n" for e in entries))


def config_dict(cfg: GatesConfig) -> dict:
    """JSON-able config."""
    return asdict(cfg)
