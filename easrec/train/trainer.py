"""Training loop: Adam(W), early stopping on validation NDCG@10, resumable atomic checkpoints.

Evaluation and patience are counted in training *targets* (next-item predictions), not in epochs:
an epoch of whole-sequence training holds as many targets as RecBole's epoch of single prefixes
but about twenty times fewer optimizer steps, so a patience in epochs means different things on
different data and batch sizes. By default the model is evaluated every `eval_every` targets and
stops after `patience` evaluations without a gain in validation NDCG@10.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from easrec.data import Split
from easrec.errors import EasrecError
from easrec.model import SASRec
from easrec.space import Arch
from easrec.train.checkpoint import CHECKPOINT_FILE, load_torch, save_torch
from easrec.train.evaluate import evaluate_model

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16")


@dataclass
class TrainConfig:
    """Options of one training run (saved in `config.json`)."""

    epochs: int = 200
    batch_size: int = 256
    lr: float = 1e-3
    # RecBole's optimizer (Adam, β2 0.999, no weight decay, no clipping) measured better on ml-100k than the
    # earlier AdamW (β2 0.98, decay 0.01, clip 1.0): benchmarks/README.md, "SASRec on ml-100k".
    weight_decay: float = 0.0
    beta2: float = 0.999  # Adam's second-moment decay
    # Evaluations without a validation gain before stopping. 10 is RecBole's stopping_step and measured
    # +0.0035 NDCG@10 over 5 on six seeds, at about twice the time to the best model (benchmarks/README.md).
    patience: int = 10
    eval_every: int = 0  # training targets between evaluations; 0 = once per epoch
    warmup_steps: int = 0  # linear learning-rate warm-up
    # Multiply the learning rate by `plateau_factor` after every `plateau_evals` evaluations without a gain
    # (1.0: constant learning rate). Patience still counts every evaluation without a gain.
    plateau_factor: float = 1.0
    plateau_evals: int = 2
    # "constant", or "cosine": decay to 0 over `epochs` epochs (after the warm-up), so `epochs` is a budget.
    schedule: str = "constant"
    stride: int = 0  # training windows end every `stride` items (0 = max_len: consecutive windows)
    loss: str = "ce"
    # "last": one sample per training prefix, loss on its newest item (RecBole's; the measured default, see
    # benchmarks/README.md); "all": windows with a loss at every position, about 3x faster per epoch, less accurate.
    targets: str = "last"
    negatives: int = 256  # uniform negatives shared by a batch with loss "sampled-ce"
    seed: int = 0
    threads: int | None = None
    keep_seen: bool = False
    grad_clip: float = 0.0  # clip the gradient norm to this; 0: off
    # Evaluate and keep an exponential moving average of the weights (decay per optimizer step; 0: off).
    # Why: one checkpoint's validation NDCG@10 moves +-0.005 between epochs, so early stopping picks lucky
    # peaks; an average of the recent weights is a smoother model to select (benchmarks/README.md).
    ema: float = 0.0
    # "bf16": the training forward and backward under CPU autocast to bfloat16 (weights, optimizer and
    # evaluation stay fp32). Faster only where the CPU multiplies bf16 natively (AVX512-BF16, AMX); measured
    # in benchmarks/README.md ("bf16 training"). "fp32": everything in fp32.
    precision: str = "fp32"

    def validate(self) -> "TrainConfig":
        """Refuse nonsensical options with the field named."""
        for name in ("epochs", "batch_size", "patience"):
            if getattr(self, name) < 1:
                raise EasrecError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        for name in ("eval_every", "warmup_steps", "stride"):
            if getattr(self, name) < 0:
                raise EasrecError(f"--{name.replace('_', '-')} must be at least 0, got {getattr(self, name)}")
        if not 0 <= self.weight_decay < 1:
            raise EasrecError(f"--weight-decay must be in [0, 1), got {self.weight_decay}")
        if not 0 < self.plateau_factor <= 1:
            raise EasrecError(f"--plateau-factor must be in (0, 1], got {self.plateau_factor}")
        if self.plateau_evals < 1:
            raise EasrecError(f"--plateau-evals must be at least 1, got {self.plateau_evals}")
        if not 0 < self.beta2 < 1:
            raise EasrecError(f"--beta2 must be in (0, 1), got {self.beta2}")
        if self.grad_clip < 0:
            raise EasrecError(f"--grad-clip must be at least 0 (0 = off), got {self.grad_clip}")
        if not self.lr > 0:
            raise EasrecError(f"--lr must be positive, got {self.lr}")
        if not 0 <= self.ema < 1:
            raise EasrecError(f"--ema must be in [0, 1) (0 = off), got {self.ema}")
        if self.schedule not in ("constant", "cosine"):
            raise EasrecError(f"--schedule must be constant or cosine, got {self.schedule!r}")
        if self.targets not in ("all", "last"):
            raise EasrecError(f"--targets must be all or last, got {self.targets!r}")
        if self.loss not in ("ce", "sampled-ce", "bce"):
            raise EasrecError(f"--loss must be ce, sampled-ce or bce, got {self.loss!r}")
        if self.precision not in PRECISIONS:
            raise EasrecError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        return self


@dataclass
class TrainResult:
    """What a finished (or early-stopped) run reached."""

    best_epoch: int
    best_valid: dict
    epoch_seconds: list[float] = field(default_factory=list)
    train_seconds: float = 0.0
    seconds_to_best: float = 0.0
    history: list[dict] = field(default_factory=list)
    samples_per_second: float = 0.0
    best_step: int = 0
    steps: int = 0


def set_determinism(seed: int, threads: int | None) -> None:
    """Seed every generator and fix the thread count (results repeat for a given seed and thread count)."""
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN multiplies bf16 natively on this CPU (AVX512-BF16 or AMX), where bf16 training pays off."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def length_bucketed_batches(lengths: torch.Tensor, batch_size: int, gen: torch.Generator) -> list[torch.Tensor]:
    """Random batches of sequences of similar length (sorted by length with random tie-breaks, batch order shuffled)."""
    noise = torch.rand(len(lengths), generator=gen)
    order = torch.argsort(lengths.double() + noise.double())
    batches = list(torch.split(order, batch_size))
    perm = torch.randperm(len(batches), generator=gen)
    return [batches[i] for i in perm]


def train_model(
    model: SASRec,
    split: Split,
    cfg: TrainConfig,
    out_dir: Path | None = None,
    *,
    active: Arch | None = None,
    resume: bool = False,
    on_epoch: Callable[[dict], None] | None = None,
    step_hook: Callable[[int], None] | None = None,
) -> TrainResult:
    """Train `model` (or its subnet `active`) with early stopping; the best weights end up in `model`.

    With `out_dir`, a checkpoint is written atomically at every evaluation and on Ctrl-C, and
    `resume=True` continues from it exactly where it stopped (mid-epoch included: the epoch's batch
    order is replayed from its saved generator state). `on_epoch` receives each evaluation's record.
    """
    cfg.validate()
    set_determinism(cfg.seed, cfg.threads)
    arch = active or model.arch
    if cfg.targets == "last":
        inputs_np, targets_np = split.prefix_arrays(arch.max_len)  # targets: one per row
    else:
        inputs_np, targets_np = split.train_arrays(arch.max_len, stride=min(cfg.stride, arch.max_len) or None)
    if len(inputs_np) == 0:
        raise EasrecError("no user has two or more training interactions: nothing to train on")
    inputs = torch.from_numpy(inputs_np)
    targets = torch.from_numpy(targets_np)
    n_targets = int((targets != 0).sum())
    targets_per_row = (targets != 0).sum(1) if targets.dim() == 2 else torch.ones(len(targets), dtype=torch.long)

    def batch_pairs(idx: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = inputs[idx, -width:].long()
        if targets.dim() == 2:
            return x, targets[idx, -width:]
        return x, targets[idx].long()  # one target per row: the model's loss then reads the newest position only

    eval_every = cfg.eval_every or n_targets
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, cfg.beta2))
    gen = torch.Generator().manual_seed(cfg.seed)  # loss-side randomness (sampled negatives)
    order_gen = torch.Generator().manual_seed(cfg.seed + 1)  # batch order, replayable per epoch
    state = {"epoch": 0, "batch": 0, "order_state": order_gen.get_state(), "step": 0, "seen": 0, "since_eval": 0,
             "evals": 0, "best_epoch": 0, "best_step": 0, "best_ndcg": -1.0, "best_valid": {}, "best_state": None,
             "epoch_seconds": [], "epoch_elapsed": 0.0, "history": [], "bad_evals": 0, "loss_sum": 0.0, "loss_n": 0,
             "wall_seconds": 0.0, "seconds_to_best": 0.0}
    ckpt_path = Path(out_dir) / CHECKPOINT_FILE if out_dir else None
    params = [p for p in model.parameters()]
    ema = [p.detach().clone() for p in params] if cfg.ema else []
    if resume:
        if ckpt_path is None or not ckpt_path.exists():
            raise EasrecError(f"--resume: no checkpoint at {ckpt_path}")
        saved = load_torch(ckpt_path)
        if saved.get("arch") != arch.to_dict() or saved.get("n_items") != model.n_items:
            raise EasrecError(f"{ckpt_path}: checkpoint is for another architecture or catalogue (field 'arch'/'n_items')")
        if "order_state" not in saved.get("state", {}):
            raise EasrecError(f"{ckpt_path}: checkpoint written by an older easrec (field 'state.order_state'); train again without --resume")
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        gen.set_state(saved["generator"])
        torch.set_rng_state(saved["torch_rng"])
        state = saved["state"]
        if cfg.ema:
            if len(saved.get("ema") or []) != len(params):
                raise EasrecError(f"{ckpt_path}: checkpoint has no weight average (field 'ema'); resume with the same --ema")
            ema = [t.clone() for t in saved["ema"]]
        log.info("resumed from %s at epoch %d, batch %d", ckpt_path, state["epoch"], state["batch"])

    def checkpoint(rng: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        if ckpt_path is None:
            return
        torch_rng, gen_state = rng or (torch.get_rng_state(), gen.get_state())
        save_torch({"arch": arch.to_dict(), "n_items": model.n_items, "model": model.state_dict(),
                    "optimizer": opt.state_dict(), "generator": gen_state, "torch_rng": torch_rng,
                    "state": state, "config": asdict(cfg), "ema": ema}, ckpt_path)

    total_steps = cfg.epochs * math.ceil(len(inputs) / cfg.batch_size)

    def lr_at(step: int) -> float:
        lr = cfg.lr * state.get("lr_scale", 1.0)
        if cfg.schedule == "cosine" and step >= cfg.warmup_steps:
            done = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
            lr *= 0.5 * (1.0 + math.cos(math.pi * min(1.0, done)))
        return lr * min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else lr

    def swap_ema() -> None:
        # Exchanges the live weights and their average in place (twice restores both).
        with torch.no_grad():
            for p, e in zip(params, ema):
                tmp = p.detach().clone()
                p.copy_(e)
                e.copy_(tmp)

    def evaluate() -> dict:
        if ema:
            swap_ema()
        try:
            valid = evaluate_model(model, split, "valid", active=active, keep_seen=cfg.keep_seen)
            candidate = {k: v.detach().clone() for k, v in model.state_dict().items()} \
                if valid["ndcg@10"] > state["best_ndcg"] else None
        finally:
            if ema:
                swap_ema()
        state["evals"] += 1
        record = {"epoch": state["epoch"] + state["batch"] / max(len(batches), 1), "step": state["step"],
                  "targets": state["seen"], "loss": state["loss_sum"] / max(state["loss_n"], 1), "lr": lr_at(state["step"]),
                  "seconds": state["wall_seconds"], **valid}
        state["loss_sum"], state["loss_n"] = 0.0, 0
        state["history"].append(record)
        if valid["ndcg@10"] > state["best_ndcg"]:
            state.update(best_ndcg=valid["ndcg@10"], best_epoch=max(1, math.ceil(record["epoch"])), best_step=state["step"], best_valid=valid,
                         bad_evals=0, seconds_to_best=state["wall_seconds"], best_state=candidate)
        else:
            state["bad_evals"] += 1
            if cfg.plateau_factor < 1 and state["bad_evals"] % cfg.plateau_evals == 0:
                state["lr_scale"] = state.get("lr_scale", 1.0) * cfg.plateau_factor
                log.info("no gain in %d evaluations: learning rate now %.2g", state["bad_evals"], lr_at(state["step"]))
        if not math.isfinite(record["loss"]):
            raise EasrecError(f"training diverged at step {state['step']} (loss {record['loss']}); lower --lr")
        return record

    lengths = (inputs != 0).sum(1)
    rng_at_step = None
    device_type = next(model.parameters()).device.type
    if cfg.precision == "bf16" and device_type == "cpu" and not cpu_has_native_bf16():
        log.warning("--precision bf16: this CPU has no native bf16 matmul (AVX512-BF16 or AMX); "
                    "training will be slower than fp32, not faster")
    try:
        while state["epoch"] < cfg.epochs and state["bad_evals"] < cfg.patience:
            model.train()
            order_gen.set_state(state["order_state"])
            batches = length_bucketed_batches(lengths, cfg.batch_size, order_gen)
            start = time.perf_counter()
            while state["batch"] < len(batches) and state["bad_evals"] < cfg.patience:
                idx = batches[state["batch"]]
                # An interrupt inside this step resumes from its start with the same random draws.
                rng_at_step = (torch.get_rng_state(), gen.get_state())
                # Batches hold sequences of similar length, so the all-padding columns on the left
                # can be cut: positions count back from the newest item, so this changes nothing.
                width = int(lengths[idx].max())
                for group in opt.param_groups:
                    group["lr"] = lr_at(state["step"])
                with torch.autocast(device_type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
                    loss = model.loss(*batch_pairs(idx, width), active, kind=cfg.loss, generator=gen,
                                      negatives=cfg.negatives)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
                if ema:
                    # The usual warm-up of the decay, so that the average does not remember the initial weights.
                    decay = min(cfg.ema, (1 + state["step"]) / (10 + state["step"]))
                    with torch.no_grad():
                        for p, e in zip(params, ema):
                            e.lerp_(p.detach(), 1.0 - decay)
                n = int(targets_per_row[idx].sum())
                state["loss_sum"] += loss.item() * n
                state["loss_n"] += n
                state["seen"] += n
                state["since_eval"] += n
                state["step"] += 1
                state["batch"] += 1
                rng_at_step = None
                if step_hook:
                    step_hook(state["step"])
                end_of_epoch = state["batch"] == len(batches)
                due = state["since_eval"] >= eval_every if cfg.eval_every else end_of_epoch
                now = time.perf_counter()
                state["wall_seconds"] += now - start
                state["epoch_elapsed"] += now - start
                start = now
                if end_of_epoch:
                    state["epoch_seconds"].append(state["epoch_elapsed"])
                    state.update(epoch=state["epoch"] + 1, batch=0, order_state=order_gen.get_state(), epoch_elapsed=0.0)
                if due:
                    state["since_eval"] = 0
                    record = evaluate()
                    model.train()
                    # Evaluation time counts towards the wall time to the best model, not towards epoch speed.
                    state["wall_seconds"] += time.perf_counter() - start
                    if state["best_step"] == state["step"]:
                        state["seconds_to_best"] = state["wall_seconds"]
                    checkpoint()
                    if on_epoch:
                        on_epoch(record)
                    start = time.perf_counter()
                elif end_of_epoch:
                    checkpoint()
                if end_of_epoch:
                    break
    except KeyboardInterrupt:
        # The interrupted step's weights were not updated (or the state already counts it): either
        # way the saved counters match the saved weights.
        checkpoint(rng_at_step)
        raise
    if state["best_state"] is not None:
        model.load_state_dict(state["best_state"])
    model.eval()
    secs = state["epoch_seconds"]
    return TrainResult(
        best_epoch=state["best_epoch"], best_valid=state["best_valid"], epoch_seconds=secs,
        train_seconds=float(state["wall_seconds"]), seconds_to_best=float(state["seconds_to_best"]), history=state["history"],
        samples_per_second=float(n_targets / np.mean(secs)) if secs else 0.0, best_step=state["best_step"],
        steps=state["step"],
    )
