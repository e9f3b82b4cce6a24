"""The data of one run: load the dataset the flags name, resize, subset, split, fit the normalizer.

Every launcher (scalar, vectorized, convolutional) starts with :func:`load_run_data`, so
``--dataset``, ``--limit``, ``--val-split`` and ``--image-size`` mean the same thing everywhere.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from common.data.memory import check_fits
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
    task: str = "classification"   # "regression" for a toy task with float targets

    @property
    def is_points(self) -> bool:
        """True for a toy task (float32 points ``(N, D, 1, 1)``), False for images."""
        return self.x_train.dtype == np.float32

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
    toy = {"size": getattr(args, "toy_size", None), "noise": getattr(args, "toy_noise", None),
           "classes": getattr(args, "toy_classes", None)}
    ds = load_dataset(name, data_dir, explicit=explicit, seed=args.seed, synth_sizes=synth_sizes, toy=toy)
    if ds.task == "regression":   # float targets: no classes to balance or stratify by
        return _regression_run_data(args, ds)
    x, y, x_test, y_test = ds.x_train, ds.y_train, ds.x_test, ds.y_test
    if args.limit:  # before any resize: --image-size 600 --limit 200 resizes 200 images, not 60000
        x, y = balanced_subset(x, y, args.limit, seed=args.seed)
        # the test set shrinks with the training set, so a quick run stays quick
        x_test, y_test = balanced_subset(x_test, y_test, max(args.limit // 5, ds.num_classes), seed=args.seed)
    size = getattr(args, "image_size", None)
    hw = tuple(input_shape[1:]) if input_shape is not None else ((size, size) if size else tuple(x.shape[2:]))
    channels = input_shape[0] if input_shape is not None else x.shape[1]
    if hw != tuple(x.shape[2:]) or channels != x.shape[1]:
        n = len(x) + len(x_test)
        check_fits(n * int(channels) * int(hw[0]) * int(hw[1]),
                   f"resizing {n} images to {channels}x{hw[0]}x{hw[1]}",
                   "use a smaller --image-size or a --limit")
        x = resize_images(x, hw, channels=channels)
        x_test = resize_images(x_test, hw, channels=channels)
    x_train, y_train, x_val, y_val = train_val_split(x, y, args.val_split, seed=args.seed)
    if len(y_train) == 0:
        raise UserError("the training set is empty; lower --val-split or raise --limit")
    return RunData(ds.name, ds.describe(), ds.fell_back, list(ds.class_names), x_train, y_train, x_val, y_val,
                   x_test, y_test, len(ds.y_test), Normalizer.fit(x_train))


def _regression_run_data(args, ds) -> RunData:
    """A toy regression task: --limit keeps the first N points, --val-split holds out a seeded
    random share (the points are already in random order)."""
    x, y, x_test, y_test = ds.x_train, ds.y_train, ds.x_test, ds.y_test
    if args.limit:
        x, y = x[:args.limit], y[:args.limit]
        x_test, y_test = x_test[:max(args.limit // 5, 10)], y_test[:max(args.limit // 5, 10)]
    if not 0.0 <= args.val_split < 1.0:
        raise UserError(f"validation fraction must be in [0, 1), got {args.val_split}")
    order = np.random.default_rng(args.seed).permutation(len(y))
    n_val = int(round(len(y) * args.val_split))
    val, train = order[:n_val], np.sort(order[n_val:])
    if len(train) == 0:
        raise UserError("the training set is empty; lower --val-split or raise --limit")
    return RunData(ds.name, ds.describe(), False, [], x[train], y[train], x[val], y[val], x_test, y_test,
                   len(ds.y_test), Normalizer.fit(x[train]), task="regression")
