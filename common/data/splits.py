"""Seeded, stratified splits and class-balanced subsets.

Stratified means every class keeps (as nearly as integers allow) the same share in both
parts, so a small validation set still has every digit in it.
"""
from __future__ import annotations

import numpy as np

from common.errors import UserError


def _per_class_counts(y: np.ndarray, total: int) -> tuple[np.ndarray, np.ndarray]:
    """Classes and how many of each to take so the counts sum to ``total`` in proportion."""
    classes, counts = np.unique(y, return_counts=True)
    exact = counts * (total / len(y))
    take = np.floor(exact).astype(np.int64)
    # hand out the remainder to the classes with the largest fractional parts
    rest = total - take.sum()
    take[np.argsort(-(exact - take), kind="stable")[:rest]] += 1
    return classes, np.minimum(take, counts)


def _stratified_pick(y: np.ndarray, total: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of ``total`` samples, stratified by label."""
    classes, take = _per_class_counts(y, total)
    picked = [rng.permutation(np.flatnonzero(y == c))[:k] for c, k in zip(classes, take)]
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=np.int64)


def train_val_split(x: np.ndarray, y: np.ndarray, val_fraction: float, seed: int = 0):
    """Split into ``(x_train, y_train, x_val, y_val)``; the validation part is ``val_fraction`` of each class.

    ``val_fraction = 0`` gives empty validation arrays (shapes ``(0, ...)``).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise UserError(f"validation fraction must be in [0, 1), got {val_fraction}")
    n_val = int(round(len(y) * val_fraction))
    rng = np.random.default_rng(seed)
    val = _stratified_pick(y, n_val, rng)
    keep = np.ones(len(y), dtype=bool)
    keep[val] = False
    train = np.flatnonzero(keep)
    return x[train], y[train], x[val], y[val]


def balanced_subset(x: np.ndarray, y: np.ndarray, n: int, seed: int = 0):
    """A class-balanced subset of ``n`` samples (``--limit N``), in a seeded order.

    Each class gets ``n // K`` samples (the first ``n % K`` classes one more); a class with too
    few samples gives all it has and the others make up the difference.  ``n >= len(y)``
    returns the arrays unchanged.
    """
    if n <= 0:
        raise UserError(f"--limit must be a positive number of samples, got {n}")
    if n >= len(y):
        return x, y
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    take = np.zeros(len(classes), dtype=np.int64)
    remaining = n
    # water-filling: repeatedly share what is left equally among classes that still have samples
    while remaining > 0:
        open_ = take < counts
        share, extra = divmod(remaining, int(open_.sum()))
        add = np.full(len(classes), share) * open_
        add[np.flatnonzero(open_)[:extra]] += 1
        add = np.minimum(add, counts - take)
        take += add
        remaining = n - int(take.sum())
    picked = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:k] for c, k in zip(classes, take)])
    picked = rng.permutation(picked)
    return x[picked], y[picked]
