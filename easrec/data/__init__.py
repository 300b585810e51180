"""Interaction data: readers, the synthetic generator, the leave-one-out split and batching."""

from easrec.data.dataset import Dataset, Split, padded_tail
from easrec.data.load import data_config, load_dataset, resolve
from easrec.data.synthetic import synthetic_dataset

__all__ = ["Dataset", "Split", "data_config", "load_dataset", "padded_tail", "resolve", "synthetic_dataset"]
