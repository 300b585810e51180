"""RecBole 1.2.1 SASRec on ml-100k: the baseline for `benchmarks/sasrec_ml100k.py`.

Runs in its OWN virtual environment (RecBole pins old libraries; never install it into .venv):

    python3 -m venv /tmp/recbole-venv
    /tmp/recbole-venv/bin/pip install torch==2.13.0 recbole==1.2.1 "setuptools>=77,<81"
    OMP_WAIT_POLICY=PASSIVE nohup /tmp/recbole-venv/bin/python benchmarks/recbole_sasrec.py > /tmp/recbole.log 2>&1 &

Same data (the shared ml-100k `.inter`, copied to /tmp, no filtering), same architecture as easrec's
benchmark (hidden 64, 2 layers, 2 heads, inner 256, MAX_ITEM_LIST_LENGTH 50, full-softmax CE), RecBole's
own protocol (leave-one-out `LS: valid_and_test`, time order, full ranking; RecBole ranks items already
in the history too, i.e. easrec's `--keep-seen`), early stopping on valid NDCG@10 with stopping_step 10,
torch at 2 threads. Everything else is RecBole's default (lr 1e-3 Adam, dropout 0.5/0.5, seed 2020).

Per-epoch train and valid seconds, the wall time from the start of `fit` to the end of the best epoch's
validation, and the test HR/NDCG/MRR@10 go to `benchmarks/results/recbole_sasrec.json`, rewritten after
every epoch so that an interrupted run still leaves what it reached (`"finished": false`).

Compatibility shims for RecBole 1.2.1 on numpy 2 / torch 2.13 / setuptools, applied here as monkeypatches
(site-packages is never edited):
  * `np.float`, `np.int`, `np.bool8`, `np.float_`, `np.complex_` restored as aliases (removed in numpy
    1.24 / 2.0; RecBole's MRR metric uses `np.float`, ray 2.6 uses `np.bool8`);
  * `torch.load` defaults to `weights_only=False` (torch >= 2.6 defaults to True, which refuses RecBole's
    own checkpoints holding its Config when the best model is reloaded for the test);
  * ray 2.6 (imported by `recbole.quick_start`) needs `pkg_resources`: setuptools must be < 81.
Not shimmed, harmless here: pandas 3 turns RecBole's chained `fillna(inplace=True)` (dataset.py:648) into a
no-op with a ChainedAssignmentError warning; ml-100k has no missing values.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import resource
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
SHARED = ROOT.parent.parent / "shared" / "datasets" / "ml-100k"


def apply_shims() -> list[str]:
    """Monkeypatches that let RecBole 1.2.1 run on numpy 2 and torch 2.13 (see the module docstring)."""
    import numpy as np
    import torch

    applied = []
    for name, value in (("float", float), ("int", int), ("bool", bool), ("bool8", np.bool_), ("float_", np.float64),
                        ("complex_", np.complex128), ("object", object), ("long", int), ("unicode_", np.str_)):
        try:
            getattr(np, name)
        except AttributeError:
            setattr(np, name, value)
            applied.append(f"np.{name}")
    original = torch.load

    @functools.wraps(original)
    def load(*args, **kwargs):
        kwargs.setdefault("weights_only", False)
        return original(*args, **kwargs)

    torch.load = load
    applied.append("torch.load(weights_only=False)")
    return applied


def load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(SHARED), help="folder holding ml-100k.inter (copied to --work)")
    ap.add_argument("--work", default="/tmp/recbole-sasrec", help="scratch folder: data copy, checkpoints, logs")
    ap.add_argument("--epochs", type=int, default=300, help="maximum epochs (early stopping ends sooner)")
    ap.add_argument("--max-len", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "results" / "recbole_sasrec.json"))
    args = ap.parse_args(argv)

    shims = apply_shims()
    import torch

    torch.set_num_threads(args.threads)
    import recbole
    from recbole.quick_start import run_recbole
    from recbole.trainer import Trainer

    work = Path(args.work)
    data_root = work / "dataset"
    (data_root / "ml-100k").mkdir(parents=True, exist_ok=True)
    for f in Path(args.data).iterdir():
        if f.is_file():
            shutil.copy2(f, data_root / "ml-100k" / f.name)

    config = {
        "data_path": str(data_root),
        "checkpoint_dir": str(work / "saved"),
        "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        # no filtering of any kind
        "user_inter_num_interval": None, "item_inter_num_interval": None, "val_interval": None, "rm_dup_inter": None,
        "MAX_ITEM_LIST_LENGTH": args.max_len,
        "hidden_size": 64, "n_layers": 2, "n_heads": 2, "inner_size": 256,
        "loss_type": "CE", "train_neg_sample_args": None,
        "train_batch_size": 256, "eval_batch_size": 4096,
        "epochs": args.epochs, "eval_step": 1, "stopping_step": 10,
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full", "group_by": "user"},
        "metrics": ["Hit", "NDCG", "MRR"], "topk": [10], "valid_metric": "NDCG@10",
        "use_gpu": False, "show_progress": False, "worker": 0, "log_wandb": False,
    }

    report: dict = {
        "tool": f"RecBole {recbole.__version__}", "model": "SASRec", "dataset": "ml-100k",
        "config": {k: v for k, v in config.items() if k not in ("data_path", "checkpoint_dir")},
        "threads": args.threads, "shims": shims, "finished": False,
        "versions": {"recbole": recbole.__version__, "torch": torch.__version__, "python": platform.python_version()},
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "epochs": [], "load_avg_start": load_avg(),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def write() -> None:
        ep = report["epochs"]
        if ep:
            best = max(ep, key=lambda e: (e["valid"].get("ndcg@10", -1), -e["epoch"]))  # first maximum, as RecBole
            report["best_epoch"] = best["epoch"]
            report["best_valid"] = best["valid"]
            report["seconds_to_best"] = best["wall_seconds"]
            report["epochs_done"] = len(ep)
            report["mean_train_seconds_per_epoch"] = sum(e["train_seconds"] for e in ep) / len(ep)
            report["mean_valid_seconds"] = sum(e["valid_seconds"] for e in ep) / len(ep)
        report["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        report["load_avg_now"] = load_avg()
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(report, indent=2) + "\n")
        tmp.replace(out)

    clock = {"fit_start": None, "train": 0.0}
    orig_fit, orig_train, orig_valid = Trainer.fit, Trainer._train_epoch, Trainer._valid_epoch

    def fit(self, *a, **k):
        clock["fit_start"] = time.perf_counter()
        return orig_fit(self, *a, **k)

    def train_epoch(self, *a, **k):
        t = time.perf_counter()
        loss = orig_train(self, *a, **k)
        clock["train"] = time.perf_counter() - t
        clock["loss"] = float(sum(loss) if isinstance(loss, tuple) else loss)
        return loss

    def valid_epoch(self, *a, **k):
        t = time.perf_counter()
        score, result = orig_valid(self, *a, **k)
        now = time.perf_counter()
        if clock["fit_start"] is not None:  # validation inside fit (not the final test)
            report["epochs"].append({
                "epoch": len(report["epochs"]) + 1, "loss": clock.get("loss"), "train_seconds": clock["train"],
                "valid_seconds": now - t, "wall_seconds": now - clock["fit_start"],
                "valid": {k.lower(): float(v) for k, v in result.items()}, "load_avg": load_avg(),
            })
            e = report["epochs"][-1]
            print(f"[bench] epoch {e['epoch']}: train {e['train_seconds']:.1f}s valid {e['valid_seconds']:.1f}s "
                  f"ndcg@10 {e['valid'].get('ndcg@10', 0):.4f} load {e['load_avg']}", flush=True)
            write()
        return score, result

    Trainer.fit, Trainer._train_epoch, Trainer._valid_epoch = fit, train_epoch, valid_epoch
    t0 = time.perf_counter()
    try:
        result = run_recbole(model="SASRec", dataset="ml-100k", config_dict=config)
    finally:
        clock["fit_start"] = None
    report["total_seconds"] = time.perf_counter() - t0
    report["test"] = {k.lower(): float(v) for k, v in result["test_result"].items()}
    report["recbole_best_valid"] = {k.lower(): float(v) for k, v in result["best_valid_result"].items()}
    report["finished"] = True
    write()
    t = report["test"]
    print(f"[bench] RecBole SASRec: best epoch {report.get('best_epoch')} of {report.get('epochs_done')}, "
          f"{report.get('mean_train_seconds_per_epoch', 0):.1f} s/epoch train, {report.get('seconds_to_best', 0):.0f} s to best; "
          f"test HR@10 {t.get('hit@10', 0):.4f} NDCG@10 {t.get('ndcg@10', 0):.4f} MRR@10 {t.get('mrr@10', 0):.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
