"""Datasets: a registry of named datasets, local files, generated digits, splits, batches.

Images are uint8 ``(N, C, H, W)`` (channels first), labels int64 ``(N,)``, everywhere.
Typical use::

    from common.data import load_dataset, train_val_split, Normalizer, iterate_batches
    ds = load_dataset("mnist")                      # or "synth-digits", or a folder path
    x_tr, y_tr, x_val, y_val = train_val_split(ds.x_train, ds.y_train, 0.1, seed=0)
    norm = Normalizer.fit(x_tr)                     # statistics of the training split only
    for xb, yb in iterate_batches(x_tr, y_tr, 64, rng=rng):
        step(norm(xb), yb)
"""
from common.data.batches import iterate_batches, num_batches
from common.data.dataset import Dataset
from common.data.normalize import Normalizer
from common.data.registry import (DATASET_NAMES, REGISTRY, list_datasets, load_dataset,
                                  resolve_data_dir)
from common.data.resize import convert_channels, resize_images
from common.data.run import RunData, load_run_data
from common.data.splits import balanced_subset, train_val_split

__all__ = [
    "DATASET_NAMES", "REGISTRY", "Dataset", "Normalizer", "RunData", "load_run_data", "balanced_subset", "convert_channels",
    "iterate_batches", "list_datasets", "load_dataset", "num_batches", "resize_images",
    "resolve_data_dir", "train_val_split",
]
