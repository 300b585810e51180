"""Training and full-ranking evaluation of SASRec-family models."""

from easrec.train.checkpoint import load_model, load_run_dataset, save_model

__all__ = ["load_model", "load_run_dataset", "save_model"]
