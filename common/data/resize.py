"""Resizing whole image batches, and converting between 1 and 3 channels.

Bilinear resizing is separable: every output row is a weighted sum of input rows, and every
output column of input columns.  So a batch is resized with two matrix products,
``out = R_h @ x @ R_w.T``, where ``R`` holds the interpolation weights.  When shrinking, the
triangle filter is widened by the scale factor (as Pillow does), which averages the pixels a
output pixel covers instead of skipping them (no aliasing).
"""
from __future__ import annotations

import numpy as np

from common.errors import UserError

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as Pillow's "L" mode


def bilinear_weights(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` weights of a (scale-widened) triangle filter; rows sum to 1."""
    scale = n_in / n_out
    support = max(scale, 1.0)
    centres = (np.arange(n_out) + 0.5) * scale                 # output centres in input pixels
    dist = (np.arange(n_in)[None, :] + 0.5 - centres[:, None]) / support
    w = np.maximum(0.0, 1.0 - np.abs(dist))
    # pixels past an edge are clamped to it (like Pillow), so border rows still sum to 1
    return (w / w.sum(axis=1, keepdims=True)).astype(np.float32)


def convert_channels(x: np.ndarray, channels: int) -> np.ndarray:
    """``(N, C, H, W)`` uint8 -> ``(N, channels, H, W)``: 1->3 replicates, 3->1 takes luminance."""
    c = x.shape[1]
    if c == channels:
        return x
    if c == 1 and channels == 3:
        return np.repeat(x, 3, axis=1)
    if c == 3 and channels == 1:
        luma = np.tensordot(_LUMA, x.astype(np.float32), axes=([0], [1]))[:, None]
        return np.round(luma).clip(0, 255).astype(np.uint8)
    raise UserError(f"cannot convert {c}-channel images to {channels} channels (only 1 <-> 3)")


def resize_images(x_uint8: np.ndarray, size: tuple[int, int], channels: int | None = None,
                  chunk: int = 4096) -> np.ndarray:
    """Bilinear resize of ``(N, C, H, W)`` uint8 to ``(N, C', size[0], size[1])`` uint8.

    ``channels`` (1 or 3) converts the channel count; None keeps it.
    """
    if x_uint8.ndim != 4:
        raise UserError(f"resize_images expects (N, C, H, W) images, got shape {x_uint8.shape}")
    if channels is not None:
        x_uint8 = convert_channels(x_uint8, channels)
    n, c, h, w = x_uint8.shape
    out_h, out_w = int(size[0]), int(size[1])
    if (h, w) == (out_h, out_w):
        return x_uint8
    rh, rw = bilinear_weights(h, out_h), bilinear_weights(w, out_w)
    out = np.empty((n, c, out_h, out_w), dtype=np.uint8)
    for i in range(0, n, chunk):
        part = x_uint8[i:i + chunk].astype(np.float32)
        part = rh @ part @ rw.T
        out[i:i + chunk] = np.round(part).clip(0, 255).astype(np.uint8)
    return out
