"""Fast BatchNorm2D and LayerNorm2D: per-channel work on wide rows, in blocks on every core.

BatchNorm2D views the (N*H*W, C) rows a few hundred at a time as long rows (:class:`_Rows`)
and works on blocks of them shared out to every core (:func:`engine.parallel.run_blocks`):
per-channel sums are totalled per worker, and the elementwise passes run on every core. It keeps
x - mean rather than x for backward, and in evaluation mode runs one scale and shift per channel.
LayerNorm2D takes each block's row means as matrix-vector products (:func:`engine.arrays.row_means`).
"""
from __future__ import annotations

import math

from common.backend import xp
from common.errors import UserError
from convolutional.geometry import check_nhwc
from convolutional.norm import BatchNorm2D, LayerNorm2D
from engine import tuning
from engine.arrays import column_sums, row_means
from engine.inference import absorbed
from engine.parallel import blocks_of, run_blocks, scratch, sum_blocks


def batchnorm_forward(self, x):
    """BatchNorm2D.forward on wide rows in blocks; keeps x - mean (not x) for backward. Without
    gamma and beta, without running statistics, with a cumulative average (momentum None) or on
    an empty batch, the layer's own code runs."""
    check_nhwc(x, self.num_features, f"BatchNorm2D({self.num_features})")
    self.ran_absorbed = absorbed(self)
    if self.ran_absorbed:  # folded into the convolution before it (engine.inference): x is already y
        self.on_reference = False
        return x
    self.on_reference = (not self.affine or not self.track_running_stats or self.momentum is None
                         or x.shape[0] == 0)
    if self.on_reference:
        return BatchNorm2D.forward.reference(self, x)
    rows = _Rows(x.shape, x.itemsize)
    xw, m = rows.wide(x), rows.count
    if not self.training:
        return _batchnorm_evaluate(self, x, rows, xw)
    if m < 2:
        raise UserError("BatchNorm2D needs more than one value per channel in training mode "
                        "(batch size 1 with a 1x1 map)")
    mean, var, centred = rows.moments(xw)  # var biased
    self.running_mean *= 1 - self.momentum
    self.running_mean += self.momentum * mean
    self.running_var *= 1 - self.momentum
    self.running_var += (self.momentum * m / (m - 1)) * var
    self.num_batches_tracked += 1
    # x - mean is kept for backward (x itself is not); x_hat = (x - mean) * inv_std is never
    # stored, which saves a pass here and a buffer the size of x. y = (x - mean) * (gamma *
    # inv_std) + beta.
    self.rows, self.centred, self.x = rows, centred, None
    self.inv_std = 1 / xp.sqrt(var + self.eps)
    scale_w, beta_w = rows.spread(self.weight.data * self.inv_std), rows.spread(self.bias.data)
    out = xp.empty_like(xw)

    def affine(r0, r1, _buf):
        ob = out[r0:r1]
        xp.multiply(centred[r0:r1], scale_w, out=ob)
        ob += beta_w

    run_blocks(rows.blocks, affine)
    return out.reshape(x.shape)


def _batchnorm_evaluate(self, x, rows, xw):
    """Evaluation: the running statistics are constants, so y = x * scale + shift with
    scale = gamma / sqrt(running_var + eps) and shift = beta - running_mean * scale: two
    operations a block and no x - mean buffer (PyTorch's inference formula too). Only
    x is kept; a backward pass in evaluation mode makes x - mean itself, a block at a time."""
    self.rows, self.centred, self.x, self.mean = rows, None, xw, self.running_mean.copy()
    self.inv_std = 1 / xp.sqrt(self.running_var + self.eps)
    scale = self.weight.data * self.inv_std
    scale_w, shift_w = rows.spread(scale), rows.spread(self.bias.data - self.mean * scale)
    out = xp.empty_like(xw)

    def affine(r0, r1, _buf):
        ob = xp.multiply(xw[r0:r1], scale_w, out=out[r0:r1])
        ob += shift_w

    run_blocks(rows.blocks, affine)
    return out.reshape(x.shape)


def batchnorm_backward(self, grad_out):
    if getattr(self, "ran_absorbed", False):  # the convolution's backward made gamma's and beta's gradients
        return grad_out
    if self.on_reference:
        return BatchNorm2D.backward.reference(self, grad_out)
    rows, centred, inv_std = self.rows, self.centred, self.inv_std
    g = rows.wide(grad_out)
    m = rows.count
    if centred is None:  # after an evaluation-mode forward pass: x - mean, a block at a time
        mean_w = rows.spread(self.mean)

        def centred_rows(r0, r1, buf):
            c = scratch(buf, "centred", (rows.blocks[0][1], g.shape[1]), g.dtype)[:r1 - r0]
            return xp.subtract(self.x[r0:r1], mean_w, out=c)
    else:
        def centred_rows(r0, r1, _buf):
            return centred[r0:r1]
    sums = rows.fold(sum_blocks(rows.blocks, lambda r0, r1, buf: xp.stack(
        [g[r0:r1].sum(axis=0), xp.einsum("mc,mc->c", g[r0:r1], centred_rows(r0, r1, buf))])))
    dbeta, g_centred = sums[0], sums[1]            # sum of g, sum of g * (x - mean), per channel
    self.weight.grad += g_centred * inv_std        # dgamma = sum of g * x_hat
    self.bias.grad += dbeta
    scale = self.weight.data * inv_std
    scale_w = rows.spread(scale)
    dx = xp.empty_like(g)
    if not self.training:  # the running statistics are constants
        run_blocks(rows.blocks, lambda r0, r1, _buf: xp.multiply(g[r0:r1], scale_w, out=dx[r0:r1]))
        return dx.reshape(grad_out.shape)
    # dx = gamma/sigma * (g - mean(g) - x_hat * mean(g * x_hat)): the direct path minus the
    # paths through the batch mean and the batch variance; with x_hat = centred * inv_std
    # that is  g * scale + centred * a + b  for per-channel a and b.
    a = rows.spread(scale * (inv_std * inv_std) * g_centred * (-1.0 / m))
    b = rows.spread(scale * dbeta * (-1.0 / m))

    def grad(r0, r1, buf):
        dxb = dx[r0:r1]
        tmp = scratch(buf, "tmp", (rows.blocks[0][1], g.shape[1]), g.dtype)[:r1 - r0]
        xp.multiply(centred[r0:r1], a, out=dxb)
        dxb += b
        dxb += xp.multiply(g[r0:r1], scale_w, out=tmp)

    run_blocks(rows.blocks, grad)
    return dx.reshape(grad_out.shape)


class _Rows:
    """Channels-last values (N, H, W, C) as M = N*H*W rows of C, for per-channel work.

    With only C values per row, every NumPy pass over (M, C) would start one short loop per row
    (engine.arrays.channel_map). So R rows at a time are viewed as one *wide* row of R*C values
    (R = gcd(M, tuning.WIDE_VALUES // C)); a per-channel vector becomes its R-fold repetition
    (``spread``) and a per-channel sum over wide rows is R partial sums per channel (``fold``).
    The wide rows are cut into blocks of about 1 MiB for :func:`engine.parallel.run_blocks`.
    """

    def __init__(self, shape, itemsize: int):
        c = shape[-1]
        self.count, self.channels = math.prod(shape) // c, c
        self.reps = math.gcd(self.count, max(1, tuning.WIDE_VALUES // c))
        self.shape = (self.count // self.reps, self.reps * c)
        self.blocks = blocks_of(self.shape[0], self.shape[1] * itemsize, small_bytes=tuning.SMALL_PASS_BYTES)

    def wide(self, a):
        """An array of the layer's shape as wide rows (a view when ``a`` is contiguous)."""
        return xp.ascontiguousarray(a).reshape(self.shape)

    def spread(self, vec):
        """(C,) -> (R*C,): the vector once per row in a wide row."""
        return xp.tile(vec, self.reps)

    def fold(self, sums):
        """(..., R*C) sums over wide rows -> (..., C) sums per channel."""
        return sums.reshape(*sums.shape[:-1], self.reps, self.channels).sum(axis=-2)

    def moments(self, xw):
        """Per-channel mean and biased variance of the wide rows ``xw``: the mean first, then the
        mean of (x - mean)² (two passes; one pass with mean(x²) - mean(x)² would cancel
        catastrophically for a channel far from 0). Returns mean, var and x - mean as wide rows."""
        mean = self.fold(sum_blocks(self.blocks, lambda r0, r1, _buf: xw[r0:r1].sum(axis=0)))
        mean *= 1.0 / self.count
        mean_w = self.spread(mean)
        centred = xp.empty_like(xw)

        def part(r0, r1, _buf):
            cb = xp.subtract(xw[r0:r1], mean_w, out=centred[r0:r1])
            return xp.einsum("mc,mc->c", cb, cb)

        var = self.fold(sum_blocks(self.blocks, part)) * (1.0 / self.count)
        return mean, var, centred


def layernorm_forward(self, x):
    """LayerNorm2D.forward: each block's row means as matrix-vector products, in cache. Training
    keeps x_hat for backward; evaluation writes it straight into the output and keeps x and the
    row means instead (a backward pass after it makes x_hat again, a block at a time)."""
    check_nhwc(x, self.num_channels, f"LayerNorm2D({self.num_channels})")
    c = self.num_channels
    x2 = xp.ascontiguousarray(x).reshape(-1, c)
    m = x2.shape[0]
    keep = self.training
    out = xp.empty_like(x2)
    x_hat = xp.empty_like(x2) if keep else None
    means = None if keep else xp.empty(m, dtype=x2.dtype)
    inv_std = xp.empty(m, dtype=x2.dtype)
    weight, bias = self.weight.data, self.bias.data
    blocks = _layernorm_blocks(m, x2.itemsize * c)

    def work(r0, r1, buf):
        xb, ob = x2[r0:r1], out[r0:r1]
        hb = x_hat[r0:r1] if keep else ob
        squares = ob if keep else scratch(buf, "squares", (blocks[0][1], c), x2.dtype)[:r1 - r0]
        mean = row_means(xb)
        if not keep:
            means[r0:r1] = mean
        xp.subtract(xb, mean[:, None], out=hb)                   # x - mean
        var = row_means(xp.multiply(hb, hb, out=squares))       # mean of (x - mean)^2
        s = inv_std[r0:r1]
        xp.sqrt(var + self.eps, out=s)
        xp.reciprocal(s, out=s)
        hb *= s[:, None]                                         # x_hat
        xp.multiply(hb, weight, out=ob)
        ob += bias

    run_blocks(blocks, work)
    self.x_hat, self.inv_std = x_hat, inv_std
    self.x2, self.means = (None, None) if keep else (x2, means)
    return out.reshape(x.shape)


def layernorm_backward(self, grad_out):
    c = self.num_channels
    g2 = xp.ascontiguousarray(grad_out).reshape(-1, c)
    x_hat, inv_std, weight = self.x_hat, self.inv_std, self.weight.data
    dx = xp.empty_like(g2)
    blocks = _layernorm_blocks(g2.shape[0], g2.itemsize * c)

    def part(r0, r1, buf):
        gb, db = g2[r0:r1], dx[r0:r1]
        if x_hat is None:  # after an evaluation-mode forward pass: x_hat from x and the row statistics
            hb = scratch(buf, "x_hat", (blocks[0][1], c), g2.dtype)[:r1 - r0]
            xp.subtract(self.x2[r0:r1], self.means[r0:r1, None], out=hb)
            hb *= inv_std[r0:r1, None]
        else:
            hb = x_hat[r0:r1]
        sums = scratch(buf, "sums", (2, c), g2.dtype)
        sums[0] = column_sums(xp.multiply(gb, hb, out=db))       # dgamma: sum of g * x_hat
        sums[1] = column_sums(gb)                                # dbeta: sum of g
        gw = xp.multiply(gb, weight, out=db)                     # dL/dx_hat
        tmp = scratch(buf, "tmp", (blocks[0][1], c), g2.dtype)[:r1 - r0]
        a = row_means(xp.multiply(gw, hb, out=tmp))             # mean_C(g * x_hat) per position
        b = row_means(gw)                                       # mean_C(g)
        # dx = (g - mean_C(g) - x_hat * mean_C(g * x_hat)) / sigma, per position
        xp.multiply(hb, a[:, None], out=tmp)
        tmp += b[:, None]
        db -= tmp
        db *= inv_std[r0:r1, None]
        return sums

    sums = sum_blocks(blocks, part)
    self.weight.grad += sums[0]
    self.bias.grad += sums[1]
    return dx.reshape(grad_out.shape)


def _layernorm_blocks(rows, row_bytes):
    return blocks_of(rows, row_bytes, tuning.LAYERNORM_BLOCK_BYTES, tuning.SMALL_PASS_BYTES)


REPLACEMENTS = [(BatchNorm2D, "forward", batchnorm_forward), (BatchNorm2D, "backward", batchnorm_backward),
                (LayerNorm2D, "forward", layernorm_forward), (LayerNorm2D, "backward", layernorm_backward)]
