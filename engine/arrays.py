"""Array helpers of the engine: matrix products split over the workers, per-channel maps and sums.

Each does what one NumPy call does (``a @ b``, ``a + vec``, ``a.sum(axis=0)``, ``a.mean(axis=1)``),
in a way that runs faster on channels-last activations on the CPU.
"""
from __future__ import annotations

import math

import numpy as np

from common.backend import backend_name, xp
from engine import tuning
from engine.parallel import cpu_workers, run_blocks


def _split(total, parts):
    step = -(-total // parts)
    return [(i, min(total, i + step)) for i in range(0, total, step)]


def gemm(a, b, out=None, bias=None, then=None):
    """``a @ b`` (into ``out`` when given), plus ``bias`` (N,) on every row when given, then ``then(block)``
    (an in-place elementwise map, such as a fused activation) when given; a: (M, K), b: (K, N).

    A product of at least ``tuning.GEMM_SPLIT_MIN_MACS`` multiply-adds is split into one block of rows
    (or of columns, when N > M) per worker and run with :func:`run_blocks`; smaller ones run
    whole on one thread, where splitting would cost more than it saves. Each worker adds the
    bias to its own block (and maps it with ``then``, always a block of whole rows) right after its
    product, while it is still in its cache. CuPy and the strict backend get a plain ``matmul``.
    """
    m, k = a.shape
    n = b.shape[1]
    workers = cpu_workers() if type(a) is np.ndarray else 1
    if workers <= 1 or m * n * k < tuning.GEMM_SPLIT_MIN_MACS:
        out = xp.matmul(a, b, out=out)
        if bias is not None:
            _add_to_rows(out, bias)
        if then is not None:
            then(out)
        return out
    if out is None:
        out = xp.empty((m, n), dtype=xp.result_type(a, b))

    def rows(r0, r1, _buf):
        block = xp.matmul(a[r0:r1], b, out=out[r0:r1])
        if bias is not None:
            _add_to_rows(block, bias)
        if then is not None:
            then(block)

    def columns(c0, c1, _buf):
        block = xp.matmul(a, b[:, c0:c1], out=out[:, c0:c1])
        if bias is not None:
            block += bias[c0:c1]

    if m >= n or then is not None:  # rows: contiguous blocks for ``then``
        run_blocks(_split(m, workers), rows)
    else:
        run_blocks(_split(n, workers), columns)
    return out


def _add_to_rows(out, vec):
    """``out += vec`` on every row of ``out`` (M, N); returns ``out``."""
    if out.flags.c_contiguous:
        return channel_map(xp.add, out, vec, out)
    out += vec
    return out




def _wide(a, reps):
    """Contiguous (M, C) -> its first M - M % reps rows as (M // reps, reps * C), and the rest (M % reps, C)."""
    k = a.shape[0] - a.shape[0] % reps
    return a[:k].reshape(k // reps, reps * a.shape[1]), a[k:]


def channel_map(ufunc, a, vec, out):
    """``out = ufunc(a, vec)`` for contiguous channels-last rows ``a, out: (M, C)`` and ``vec: (C,)``.

    Broadcasting ``vec`` over (M, C) makes NumPy run its inner loop once per row of C values,
    and the start of a loop costs as much as a few hundred values (C = 32: 1.08 ms for 1.6 M
    values against 0.19 ms for a same-shape add). So R = tuning.WIDE_VALUES // C rows are taken at a
    time, as one row of R*C values, against ``vec`` repeated R times: the same arithmetic in
    long loops. Rows left over (M % R) are done the plain way.
    """
    reps = max(1, tuning.WIDE_VALUES // vec.shape[0])
    a_wide, a_rest = _wide(a, reps)
    out_wide, out_rest = _wide(out, reps)
    if a_wide.size:
        ufunc(a_wide, xp.tile(vec, reps), out=out_wide)
    if a_rest.size:
        ufunc(a_rest, vec, out=out_rest)
    return out


_vectors = {}  # (length, value, dtype, backend) -> a constant vector, for column_sums and row_means


def _constant_vector(length, value, dtype):
    key = (length, value, dtype, backend_name())
    vec = _vectors.get(key)
    if vec is None:
        if len(_vectors) > 64:
            _vectors.clear()
        vec = _vectors[key] = xp.full(length, value, dtype=dtype)
    return vec


def column_sums(a):
    """``a: (M, C) -> (C,)``: the sum of every column, as one matrix-vector product ``ones(M) @ a``.

    This is the per-channel sum of channels-last activations (bias gradients, batch-norm means).
    ``a.sum(axis=0)`` walks the M short rows one at a time; the product runs in BLAS and was
    measured 3-10x faster here for C <= 128 (e.g. 50176 x 6: 0.81 ms -> 0.08 ms).
    """
    return _constant_vector(a.shape[0], 1.0, a.dtype) @ a


def row_means(a):
    """``a: (R, C) -> (R,)``: the mean of every row, as one matrix-vector product ``a @ (1/C)``
    (LayerNorm's per-position statistics over channels-last rows)."""
    return a @ _constant_vector(a.shape[1], 1.0 / a.shape[1], a.dtype)


def copy_pixels(dst, src, max_item_bytes=None):
    """``dst[...] = src`` for channels-last arrays of the same shape whose last axis (the C values
    of a pixel) is contiguous, as in a strided view of every kw-th pixel.

    NumPy copies a strided view one innermost run at a time, and with few channels a run is only
    C values. Viewing each pixel's C values as one item of C·itemsize bytes (a NumPy ``void``
    dtype) makes the pixel the unit of the copy instead (up to ``PIXEL_ITEM_BYTES``, or
    ``max_item_bytes``). A plain copy on the GPU, or when a last axis is not contiguous."""
    nbytes = src.shape[-1] * src.itemsize
    limit = tuning.PIXEL_ITEM_BYTES if max_item_bytes is None else max_item_bytes
    if (nbytes > limit or type(src) is not np.ndarray or type(dst) is not np.ndarray
            or src.dtype != dst.dtype or src.strides[-1] != src.itemsize or dst.strides[-1] != dst.itemsize):
        dst[...] = src
        return dst
    item = f"V{nbytes}"
    dst.view(item)[...] = src.view(item)
    return dst


def relu_into(a, out):
    """max(a, 0) into ``out`` (which may be ``a``), as clip(a, 0, ∞): the same numbers, and NumPy 2.4
    runs ``maximum`` against a scalar three times slower than ``clip`` (engine.activations' notes)."""
    return xp.clip(a, 0, math.inf, out=out)
