"""Training loop: AdamW, early stopping on validation NDCG@10, resumable atomic checkpoints."""

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


@dataclass
class TrainConfig:
    """Options of one training run (saved in `config.json`)."""

    epochs: int = 200
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.01
    patience: int = 10
    loss: str = "ce"
    seed: int = 0
    threads: int | None = None
    keep_seen: bool = False
    grad_clip: float = 1.0

    def validate(self) -> "TrainConfig":
        """Refuse nonsensical options with the field named."""
        for name in ("epochs", "batch_size", "patience"):
            if getattr(self, name) < 1:
                raise EasrecError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise EasrecError(f"--lr must be positive, got {self.lr}")
        if self.loss not in ("ce", "bce"):
            raise EasrecError(f"--loss must be ce or bce, got {self.loss!r}")
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


def set_determinism(seed: int, threads: int | None) -> None:
    """Seed every generator and fix the thread count (results repeat for a given seed and thread count)."""
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))


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

    With `out_dir`, a checkpoint is written atomically after every epoch and on Ctrl-C, and
    `resume=True` continues from it. `on_epoch` receives each epoch's record (for progress bars).
    """
    cfg.validate()
    set_determinism(cfg.seed, cfg.threads)
    arch = active or model.arch
    inputs_np, targets_np = split.train_arrays(arch.max_len)
    if len(inputs_np) == 0:
        raise EasrecError("no user has two or more training interactions: nothing to train on")
    inputs = torch.from_numpy(inputs_np)
    targets = torch.from_numpy(targets_np)
    n_targets = int((targets != 0).sum())
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    gen = torch.Generator().manual_seed(cfg.seed)
    state = {"epoch": 0, "best_epoch": 0, "best_ndcg": -1.0, "best_valid": {}, "best_state": None,
             "epoch_seconds": [], "history": [], "bad_epochs": 0,
             "wall_seconds": 0.0, "seconds_to_best": 0.0}
    ckpt_path = Path(out_dir) / CHECKPOINT_FILE if out_dir else None
    if resume:
        if ckpt_path is None or not ckpt_path.exists():
            raise EasrecError(f"--resume: no checkpoint at {ckpt_path}")
        saved = load_torch(ckpt_path)
        if saved.get("arch") != arch.to_dict() or saved.get("n_items") != model.n_items:
            raise EasrecError(f"{ckpt_path}: checkpoint is for another architecture or catalogue (field 'arch'/'n_items')")
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        gen.set_state(saved["generator"])
        torch.set_rng_state(saved["torch_rng"])
        state = saved["state"]
        log.info("resumed from %s at epoch %d", ckpt_path, state["epoch"])

    def checkpoint() -> None:
        if ckpt_path is None:
            return
        save_torch({"arch": arch.to_dict(), "n_items": model.n_items, "model": model.state_dict(),
                    "optimizer": opt.state_dict(), "generator": gen.get_state(), "torch_rng": torch.get_rng_state(),
                    "state": state, "config": asdict(cfg)}, ckpt_path)

    lengths = (inputs != 0).sum(1)
    try:
        while state["epoch"] < cfg.epochs and state["bad_epochs"] < cfg.patience:
            model.train()
            start = time.perf_counter()
            total, steps = 0.0, 0
            for idx in length_bucketed_batches(lengths, cfg.batch_size, gen):
                # Batches hold sequences of similar length, so the all-padding columns on the left
                # can be cut: positions count back from the newest item, so this changes nothing.
                width = int(lengths[idx].max())
                loss = model.loss(inputs[idx, -width:], targets[idx, -width:], active, kind=cfg.loss, generator=gen)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
                total += loss.item()
                steps += 1
                if step_hook:
                    step_hook(steps)
            seconds = time.perf_counter() - start
            valid = evaluate_model(model, split, "valid", active=active, keep_seen=cfg.keep_seen)
            state["epoch"] += 1
            state["epoch_seconds"].append(seconds)
            state["wall_seconds"] += time.perf_counter() - start
            record = {"epoch": state["epoch"], "loss": total / max(steps, 1), "seconds": seconds, **valid}
            state["history"].append(record)
            if valid["ndcg@10"] > state["best_ndcg"]:
                state.update(best_ndcg=valid["ndcg@10"], best_epoch=state["epoch"], best_valid=valid, bad_epochs=0,
                             seconds_to_best=state["wall_seconds"],
                             best_state={k: v.detach().clone() for k, v in model.state_dict().items()})
            else:
                state["bad_epochs"] += 1
            if not math.isfinite(record["loss"]):
                raise EasrecError(f"training diverged at epoch {state['epoch']} (loss {record['loss']}); lower --lr")
            checkpoint()
            if on_epoch:
                on_epoch(record)
    except KeyboardInterrupt:
        checkpoint()
        raise
    if state["best_state"] is not None:
        model.load_state_dict(state["best_state"])
    model.eval()
    secs = state["epoch_seconds"]
    return TrainResult(
        best_epoch=state["best_epoch"], best_valid=state["best_valid"], epoch_seconds=secs,
        train_seconds=float(state["wall_seconds"]), seconds_to_best=float(state["seconds_to_best"]), history=state["history"],
        samples_per_second=float(n_targets / np.mean(secs)) if secs else 0.0,
    )
