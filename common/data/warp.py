"""Batched geometric warps: random affine maps, smooth elastic fields, bilinear sampling.

Coordinates are *normalised*: an image spans [-1, 1] on both axes, whatever its size, so one
transform can be rendered at 28x28 or 32x32.  A warp is described backwards, as for any
resampling: for every output pixel ``p`` we compute the source point ``q`` to read from,

    q = A^-1 (p - t) + d(p)

where ``A`` (rotation, shear, scale) and ``t`` (translation) are the forward affine map and
``d`` is a smooth random displacement (elastic distortion).  Everything is done for a whole
batch at once with NumPy; no per-image Python loop.
"""
from __future__ import annotations

import numpy as np


def pixel_grid(size: int) -> np.ndarray:
    """Normalised centres of a ``size x size`` image: ``(2, size, size)`` as (y, x)."""
    c = (np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0
    return np.stack(np.meshgrid(c, c, indexing="ij"))


def random_affine(rng: np.random.Generator, n: int, *, rotation_deg: float, shear: float,
                  scale: tuple[float, float], aspect: tuple[float, float],
                  shift: float) -> tuple[np.ndarray, np.ndarray]:
    """Random forward maps ``A = R(theta) @ Shear(k) @ diag(s*a, s/a)``: ``(n, 2, 2)``, ``t``: ``(n, 2)``.

    Rows and columns are ordered (y, x).  ``shift`` is the largest translation in normalised units.
    """
    theta = np.deg2rad(rng.uniform(-rotation_deg, rotation_deg, n))
    k = rng.uniform(-shear, shear, n)
    s = rng.uniform(*scale, n)
    a = np.sqrt(rng.uniform(*aspect, n))  # aspect ratio split between the two axes
    cos, sin = np.cos(theta), np.sin(theta)
    rot = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)
    shr = np.zeros((n, 2, 2))
    shr[:, 0, 0] = shr[:, 1, 1] = 1.0
    shr[:, 1, 0] = k  # x moves with y: a slant, as in handwriting
    scl = np.zeros((n, 2, 2))
    scl[:, 0, 0] = s / a
    scl[:, 1, 1] = s * a
    forward = rot @ shr @ scl
    t = rng.uniform(-shift, shift, (n, 2))
    return forward.astype(np.float32), t.astype(np.float32)


def _interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    """Linear interpolation from ``n_in`` evenly spaced knots to ``n_out`` pixel centres: (n_out, n_in)."""
    pos = (np.arange(n_out) + 0.5) / n_out * (n_in - 1)
    lo = np.minimum(np.floor(pos).astype(int), n_in - 2)
    frac = pos - lo
    m = np.zeros((n_out, n_in), dtype=np.float32)
    m[np.arange(n_out), lo] = 1.0 - frac
    m[np.arange(n_out), lo + 1] = frac
    return m


def smooth_field(rng: np.random.Generator, n: int, size: int, knots: int = 5,
                 channels: int = 2) -> np.ndarray:
    """Smooth random fields ``(n, channels, size, size)`` with unit-scale values.

    Gaussian noise on a coarse ``knots x knots`` lattice, interpolated up to ``size``:
    ``F = U @ noise @ U.T`` with ``U`` the (size, knots) interpolation matrix.
    """
    coarse = rng.standard_normal((n, channels, knots, knots)).astype(np.float32)
    u = _interp_matrix(size, knots)
    return u @ coarse @ u.T


def source_points(forward: np.ndarray, t: np.ndarray, size: int,
                  displacement: np.ndarray | None = None) -> np.ndarray:
    """Where each output pixel reads from: ``(n, 2, size, size)`` normalised (y, x).

    forward: (n, 2, 2), t: (n, 2), displacement: (n, 2, size, size) or None.
    """
    inverse = np.linalg.inv(forward.astype(np.float64)).astype(np.float32)
    p = pixel_grid(size).reshape(2, -1)                        # (2, P)
    q = inverse @ (p[None] - t[:, :, None])                    # (n, 2, P)
    q = q.reshape(len(forward), 2, size, size)
    if displacement is not None:
        q = q + displacement
    return q


def bilinear_sample(bank: np.ndarray, index: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Read ``bank[index[i]]`` at ``points[i]`` with bilinear weights, zero outside.

    bank: (K, T, T) float32 images; index: (n,) ints; points: (n, 2, S, S) normalised (y, x).
    Returns (n, S, S) float32.
    """
    k, side, _ = bank.shape
    padded = np.pad(bank, ((0, 0), (1, 1), (1, 1)))  # a zero border makes "outside" read 0
    flat = padded.reshape(-1)
    width = side + 2
    # normalised -> template pixel coordinates (+1 for the border), clamped into the border
    pix = (points + 1.0) * (side / 2.0) - 0.5 + 1.0
    pix = np.clip(pix, 0.0, side + 0.999)
    y, x = pix[:, 0], pix[:, 1]
    y0 = np.minimum(np.floor(y), side)
    x0 = np.minimum(np.floor(x), side)
    fy, fx = y - y0, x - x0                                   # float32 fractions
    base = (index.astype(np.intp) * (width * width))[:, None, None] + (y0 * width + x0).astype(np.intp)
    v00 = np.take(flat, base)
    v01 = np.take(flat, base + 1)
    v10 = np.take(flat, base + width)
    v11 = np.take(flat, base + width + 1)
    top = v00 + fx * (v01 - v00)
    bottom = v10 + fx * (v11 - v10)
    return top + fy * (bottom - top)


def blur3(images: np.ndarray) -> np.ndarray:
    """Separable [1, 2, 1]/4 blur of ``(n, S, S)`` images (zero padding)."""
    p = np.pad(images, ((0, 0), (1, 1), (0, 0)))
    v = 0.25 * p[:, :-2] + 0.5 * p[:, 1:-1] + 0.25 * p[:, 2:]
    p = np.pad(v, ((0, 0), (0, 0), (1, 1)))
    return 0.25 * p[:, :, :-2] + 0.5 * p[:, :, 1:-1] + 0.25 * p[:, :, 2:]
