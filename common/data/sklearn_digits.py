"""scikit-learn's bundled handwritten digits, as a small real dataset that needs no network.

``sklearn.datasets.load_digits`` ships 1,797 scans of handwritten digits (UCI's "Optical
Recognition of Handwritten Digits"), 8x8 pixels with values 0..16, inside the scikit-learn
package itself. This loader:

- scales the values to 0..255 and resizes each image to 28x28 (bilinear), so every tier and
  architecture takes it the way it takes MNIST;
- splits it into train and test with a fixed, class-stratified shuffle (``test_fraction`` of
  each class goes to test), so the split is the same on every machine.

It needs the optional ``digits`` extra: ``pip install 'nnott[digits]'``.
"""
from __future__ import annotations

import numpy as np

from common.errors import DataError

SOURCE = "sklearn.datasets.load_digits (bundled with scikit-learn)"


def _digits():
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError("the sklearn-digits dataset needs scikit-learn: pip install 'nnott[digits]'") from None
    bunch = load_digits()
    return bunch.images, bunch.target


def to_uint8_images(images8: np.ndarray, size: int = 28) -> np.ndarray:
    """``(N, 8, 8)`` values in 0..16 -> ``(N, 1, size, size)`` uint8 in 0..255 (bilinear resize)."""
    from PIL import Image

    scaled = np.clip(np.asarray(images8, dtype=np.float32) * (255.0 / 16.0), 0, 255)
    if size == images8.shape[-1]:
        return scaled.round().astype(np.uint8)[:, None]
    out = np.empty((len(scaled), 1, size, size), dtype=np.uint8)
    for i, img in enumerate(scaled):
        resized = Image.fromarray(img, mode="F").resize((size, size), Image.BILINEAR)
        out[i, 0] = np.clip(np.asarray(resized), 0, 255).round().astype(np.uint8)
    return out


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int):
    """Indices (train, test): ``round(test_fraction * count)`` of each class go to test."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = int(round(test_fraction * len(idx)))
        test.append(idx[:k])
        train.append(idx[k:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def load_sklearn_digits(seed: int = 0, test_fraction: float = 0.2, size: int = 28):
    """``(x_train, y_train, x_test, y_test)``: uint8 ``(N, 1, size, size)`` and int64 labels."""
    images, target = _digits()
    x = to_uint8_images(images, size)
    y = np.asarray(target, dtype=np.int64)
    train, test = stratified_split(y, test_fraction, seed)
    return x[train], y[train], x[test], y[test]
