"""Per-channel normalisation with statistics from the training split only.

Images are scaled to [0, 1] and then standardised per channel::

    x_norm[:, c] = (x[:, c] / 255 - mean[c]) / std[c]

``mean`` and ``std`` are fitted on the training images *after* the validation split, so
nothing about the validation or test images leaks into training.  They are stored with the
run (``state_dict``) so inference uses exactly the same values.
"""
from __future__ import annotations

import numpy as np

from common.backend import get_array_module


class Normalizer:
    """``mean``, ``std``: ``(C,)`` float32 statistics of images scaled to [0, 1]."""

    def __init__(self, mean, std):
        self.mean = np.asarray(mean, dtype=np.float32).reshape(-1)
        self.std = np.asarray(std, dtype=np.float32).reshape(-1)
        if self.mean.shape != self.std.shape:
            raise ValueError(f"mean {self.mean.shape} and std {self.std.shape} differ in shape")

    @classmethod
    def fit(cls, x_uint8: np.ndarray, chunk: int = 8192) -> "Normalizer":
        """Statistics of ``(N, C, H, W)`` uint8 images (summed in float64, chunk by chunk)."""
        if x_uint8.ndim != 4 or len(x_uint8) == 0:
            raise ValueError(f"expected a non-empty (N, C, H, W) array, got shape {x_uint8.shape}")
        c = x_uint8.shape[1]
        s, s2 = np.zeros(c), np.zeros(c)
        scale = 1.0 / 255.0 if x_uint8.dtype == np.uint8 else 1.0  # float input: toy points, already scaled
        for i in range(0, len(x_uint8), chunk):
            part = x_uint8[i:i + chunk].astype(np.float64) * scale
            s += part.sum(axis=(0, 2, 3))
            s2 += np.square(part).sum(axis=(0, 2, 3))
        count = x_uint8.size / c
        mean = s / count
        std = np.sqrt(np.maximum(s2 / count - mean**2, 0.0))
        return cls(mean, np.maximum(std, 1e-3))  # a constant channel must not divide by zero

    def __call__(self, x):
        """``(N, C, H, W)`` uint8 (or float already in [0, 1]) -> float32 normalised, same shape.

        Works on host arrays and on device arrays (the statistics are moved to ``x``'s device).
        """
        mod = get_array_module(x)
        scale = 1.0 / 255.0 if x.dtype == np.uint8 else 1.0
        mean = mod.asarray(self.mean.reshape(-1, 1, 1))
        inv_std = mod.asarray((1.0 / self.std).reshape(-1, 1, 1))
        return (x.astype(np.float32) * np.float32(scale) - mean) * inv_std

    def inverse(self, x) -> np.ndarray:
        """Normalised float images -> uint8 ``(N, C, H, W)`` (for showing them)."""
        x = np.asarray(x, dtype=np.float32)
        img = x * self.std.reshape(-1, 1, 1) + self.mean.reshape(-1, 1, 1)
        return np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)

    def state_dict(self) -> dict:
        return {"mean": self.mean.copy(), "std": self.std.copy()}

    @classmethod
    def from_state_dict(cls, d: dict) -> "Normalizer":
        return cls(d["mean"], d["std"])

    def __repr__(self):
        fmt = lambda v: "[" + ", ".join(f"{a:.4f}" for a in v) + "]"  # noqa: E731
        return f"Normalizer(mean={fmt(self.mean)}, std={fmt(self.std)})"
