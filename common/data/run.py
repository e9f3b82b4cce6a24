"""The data of one run: load the dataset the flags name, resize, subset, split, fit the normalizer.

Every launcher (scalar, vectorized, convolutional) starts with :func:`load_run_data`, so
``--dataset``, ``--limit``, ``--val-split`` and ``--image-size`` mean the same thing everywhere.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from common.data.legacy import resolve_old_data_dir
from common.data.normalize import Normalizer
from common.data.registry import load_dataset
from common.data.resize import resize_images
from common.data.splits import balanced_subset, train_val_split
from common.errors import UserError


@dataclass
class RunData:
    """Host uint8 splits ``(N, C, H, W)`` with int64 labels, and where they came from."""

    name: str
    description: str
    fell_back: bool
    class_names: list
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    test_total: int           # test images before --limit shrank the test set
    normalizer: Normalizer    # statistics of x_train only

    @property
    def image_shape(self) -> tuple:
        return tuple(int(s) for s in self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_size(self) -> int:
        return int(np.prod(self.image_shape))


def load_run_data(args, *, dataset=None, input_shape=None, synth_sizes=None) -> RunData:
    """Load the data described by ``args`` (--dataset, --data-dir, --limit, --val-split, --seed,
    and --image-size when the launcher has it).

    ``dataset`` overrides --dataset (and counts as explicit); ``input_shape`` (C, H, W) converts the
    images to a given channel count and size, e.g. a resumed model's own.
    """
    chosen, data_dir = resolve_old_data_dir(dataset or getattr(args, "dataset", None), args.data_dir)
    explicit = chosen is not None
    name = chosen or "mnist"
    ds = load_dataset(name, data_dir, explicit=explicit, seed=args.seed, synth_sizes=synth_sizes)
    x, y, x_test, y_test = ds.x_train, ds.y_train, ds.x_test, ds.y_test
    size = getattr(args, "image_size", None)
    hw = tuple(input_shape[1:]) if input_shape is not None else ((size, size) if size else tuple(x.shape[2:]))
    channels = input_shape[0] if input_shape is not None else x.shape[1]
    if hw != tuple(x.shape[2:]) or channels != x.shape[1]:
        x = resize_images(x, hw, channels=channels)
        x_test = resize_images(x_test, hw, channels=channels)
    if args.limit:
        x, y = balanced_subset(x, y, args.limit, seed=args.seed)
        # the test set shrinks with the training set, so a quick run stays quick
        x_test, y_test = balanced_subset(x_test, y_test, max(args.limit // 5, ds.num_classes), seed=args.seed)
    x_train, y_train, x_val, y_val = train_val_split(x, y, args.val_split, seed=args.seed)
    if len(y_train) == 0:
        raise UserError("the training set is empty; lower --val-split or raise --limit")
    return RunData(ds.name, ds.describe(), ds.fell_back, list(ds.class_names), x_train, y_train, x_val, y_val,
                   x_test, y_test, len(ds.y_test), Normalizer.fit(x_train))
