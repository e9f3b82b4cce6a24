"""Normalisation on channels-last activations: BatchNorm2D and LayerNorm2D.

Both compute x_hat = (x - mean) / sqrt(var + eps), y = gamma * x_hat + beta with a per-channel
gamma and beta; they differ in *which* numbers share a mean:

* BatchNorm2D: one mean per channel over (N, H, W) -- statistics of the batch, so training
  and evaluation differ (running averages are used in evaluation);
* LayerNorm2D: one mean per position (n, y, x) over the C channels -- each pixel on its own,
  the same in training and evaluation (ConvNeXt).

With channels last, BatchNorm2D reduces over the rows of an (N*H*W, C) matrix and LayerNorm2D
over its columns. BatchNorm2D works on blocks of rows shared out to every core
(:func:`common.backend.run_blocks`): each block's statistics are computed in cache and then
combined, and the elementwise passes run in each core's cache; per-channel vectors meet the
rows in long runs (:func:`common.backend.channel_map`).
"""
from __future__ import annotations

import numpy as np

from common import backend
from common.backend import DTYPE, blocks_of, channel_map, channel_sums, run_blocks, sum_blocks, to_device, xp
from common.errors import UserError
from convolutional.geometry import check_nhwc
from vectorized.module import Module, parameter


class BatchNorm2D(Module):
    """Per-channel batch normalisation.   (N, H, W, C) -> (N, H, W, C).

    PyTorch semantics: training normalises with the *biased* batch variance and updates
    running_var with the *unbiased* one (x M/(M-1), M = N*H*W); running = (1-momentum)*running
    + momentum*batch. Evaluation uses the running statistics. Buffers: running_mean,
    running_var, num_batches_tracked (PyTorch's state-dict keys).
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), float(momentum)
        self.weight = parameter(np.ones(self.num_features))
        self.bias = parameter(np.zeros(self.num_features))
        self.register_buffer("running_mean", to_device(np.zeros(self.num_features), dtype=DTYPE))
        self.register_buffer("running_var", to_device(np.ones(self.num_features), dtype=DTYPE))
        self.register_buffer("num_batches_tracked", to_device(np.array(0), dtype=np.int64))

    def forward(self, x):
        check_nhwc(x, self.num_features, f"BatchNorm2D({self.num_features})")
        x2 = xp.ascontiguousarray(x).reshape(-1, self.num_features)  # (M, C) rows
        m, c = x2.shape
        blocks = blocks_of(m, c * x.itemsize, small_bytes=backend.SMALL_PASS_BYTES)
        if self.training:
            if m < 2:
                raise UserError("BatchNorm2D needs more than one value per channel in training mode "
                                "(batch size 1 with a 1x1 map)")
            mean, var = self._batch_statistics(x2, blocks)  # var: biased
            self.running_mean *= 1 - self.momentum
            self.running_mean += self.momentum * mean
            self.running_var *= 1 - self.momentum
            self.running_var += (self.momentum * m / (m - 1)) * var
            self.num_batches_tracked += 1
        else:
            mean, var = self.running_mean, self.running_var
        # y = gamma * (x - mean) * inv_std + beta = x * scale + shift, one pass (PyTorch's form).
        # Only x itself is kept for the backward pass, which recomputes x - mean block by block.
        self.inv_std = 1 / xp.sqrt(var + self.eps)
        self.x2, self.mean = x2, mean
        scale = self.weight.data * self.inv_std
        shift = self.bias.data - mean * scale
        out = xp.empty_like(x2)

        def affine(r0, r1, _buf):
            ob = channel_map(xp.multiply, x2[r0:r1], scale, out[r0:r1])
            channel_map(xp.add, ob, shift, ob)

        run_blocks(blocks, affine)
        return out.reshape(x.shape)

    @staticmethod
    def _batch_statistics(x2, blocks):
        """Per-channel mean and biased variance of x2's rows, in one pass over memory: each block's
        mean and sum of squared deviations (its second pass runs in cache), then combined exactly
        (Chan et al.): M2 = sum of the blocks' M2 + n_b * (mean_b - mean)^2."""
        parts = {}

        def block(r0, r1, buf):
            xb = x2[r0:r1]
            mean_b = channel_sums(xb) * (1.0 / (r1 - r0))
            dev = buf.setdefault("dev", xp.empty((blocks[0][1], xb.shape[1]), dtype=xb.dtype))[:r1 - r0]
            channel_map(xp.subtract, xb, mean_b, dev)
            parts[r0] = (r1 - r0, mean_b, channel_sums(dev, dev))

        run_blocks(blocks, block)
        order = sorted(parts)  # a fixed order: the same sums whichever worker finished first
        counts = xp.asarray([parts[r][0] for r in order], dtype=x2.dtype)[:, None]
        means = xp.stack([parts[r][1] for r in order])
        m2s = xp.stack([parts[r][2] for r in order])
        m = x2.shape[0]
        mean = (counts * means).sum(axis=0) * (1.0 / m)
        var = (m2s.sum(axis=0) + (counts * (means - mean) ** 2).sum(axis=0)) * (1.0 / m)
        return mean, var

    def backward(self, grad_out):
        g = xp.ascontiguousarray(grad_out).reshape(-1, self.num_features)
        x2, mean, inv_std = self.x2, self.mean, self.inv_std
        m, c = g.shape
        blocks = blocks_of(m, c * g.itemsize, small_bytes=backend.SMALL_PASS_BYTES)
        scale = self.weight.data * inv_std
        dx = xp.empty_like(g)

        def sums(r0, r1, buf):  # sum of g and of g * (x - mean) over this block's rows
            dev = buf.setdefault("dev", xp.empty((blocks[0][1], c), dtype=g.dtype))[:r1 - r0]
            channel_map(xp.subtract, x2[r0:r1], mean, dev)
            return xp.stack([channel_sums(g[r0:r1]), channel_sums(g[r0:r1], dev)])

        totals = sum_blocks(blocks, sums)
        dbeta, g_centred = totals[0], totals[1]        # sum of g, sum of g * (x - mean), per channel
        self.weight.grad += g_centred * inv_std        # dgamma = sum of g * x_hat
        self.bias.grad += dbeta
        if not self.training:  # the running statistics are constants
            run_blocks(blocks, lambda r0, r1, _buf: channel_map(xp.multiply, g[r0:r1], scale, dx[r0:r1]))
            return dx.reshape(grad_out.shape)
        # dx = gamma/sigma * (g - mean(g) - x_hat * mean(g * x_hat)): the direct path minus the
        # paths through the batch mean and the batch variance; with x_hat = (x - mean) * inv_std
        # that is  g * scale + (x - mean) * a + b  for per-channel a and b. (x - mean) is formed
        # first: x * a - mean * a would lose the digits that matter when |mean| >> sigma.
        a = scale * (inv_std * inv_std) * g_centred * (-1.0 / m)
        b = scale * dbeta * (-1.0 / m)

        def grad(r0, r1, buf):
            dxb = channel_map(xp.subtract, x2[r0:r1], mean, dx[r0:r1])
            channel_map(xp.multiply, dxb, a, dxb)
            channel_map(xp.add, dxb, b, dxb)
            tmp = buf.setdefault("tmp", xp.empty((blocks[0][1], c), dtype=g.dtype))[:r1 - r0]
            dxb += channel_map(xp.multiply, g[r0:r1], scale, tmp)

        run_blocks(blocks, grad)
        return dx.reshape(grad_out.shape)

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class LayerNorm2D(Module):
    """Normalise each position over its channels.   (N, H, W, C) -> (N, H, W, C).

    mean and var are taken over C only (not over H, W and C together), like ConvNeXt's
    channels-last LayerNorm; weight and bias are per channel.
    """

    def __init__(self, num_channels: int, eps: float = 1e-6):
        super().__init__()
        self.num_channels, self.eps = int(num_channels), float(eps)
        self.weight = parameter(np.ones(self.num_channels))
        self.bias = parameter(np.zeros(self.num_channels))

    def forward(self, x):
        check_nhwc(x, self.num_channels, f"LayerNorm2D({self.num_channels})")
        mean = x.mean(axis=-1, keepdims=True)
        centred = x - mean
        var = (centred * centred).mean(axis=-1, keepdims=True)
        self.inv_std = 1 / xp.sqrt(var + self.eps)
        self.x_hat = centred
        self.x_hat *= self.inv_std
        out = self.x_hat * self.weight.data
        out += self.bias.data
        return out

    def backward(self, grad_out):
        axes = (0, 1, 2)
        self.weight.grad += (grad_out * self.x_hat).sum(axis=axes)
        self.bias.grad += grad_out.sum(axis=axes)
        g = grad_out * self.weight.data  # dL/dx_hat
        # dx = (g - mean_C(g) - x_hat * mean_C(g * x_hat)) / sigma, per position
        dx = self.x_hat * (g * self.x_hat).mean(axis=-1, keepdims=True)
        dx += g.mean(axis=-1, keepdims=True)
        xp.subtract(g, dx, out=dx)
        dx *= self.inv_std
        return dx

    def extra_repr(self):
        return f"{self.num_channels}, eps={self.eps}"
