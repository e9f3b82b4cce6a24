"""Normalisation on channels-last activations: BatchNorm2D and LayerNorm2D.

Both compute x_hat = (x - mean) / sqrt(var + eps), y = gamma * x_hat + beta with a per-channel
gamma and beta; they differ in *which* numbers share a mean:

* BatchNorm2D: one mean per channel over (N, H, W) -- statistics of the batch, so training
  and evaluation differ (running averages are used in evaluation);
* LayerNorm2D: one mean per position (n, y, x) over the C channels -- each pixel on its own,
  the same in training and evaluation (ConvNeXt).

With channels last, (N, H, W, C) is an (N*H*W, C) matrix: BatchNorm2D normalises its columns,
which is exactly BatchNorm1d on N*H*W rows, and LayerNorm2D normalises its rows.
"""
from __future__ import annotations

import numpy as np

from common.backend import xp
from common.dispatch import accelerated
from convolutional.geometry import check_nhwc
from vectorized.layers import BatchNorm1d
from vectorized.module import Module, parameter


@accelerated("forward", "backward")
class BatchNorm2D(BatchNorm1d):
    """Per-channel batch normalisation.   (N, H, W, C) -> (N, H, W, C).

    BatchNorm1d on the (N*H*W, C) rows: training normalises with the *biased* batch variance and
    updates running_var with the *unbiased* one (x M/(M-1), M = N*H*W); running = (1-momentum)*running
    + momentum*batch. Evaluation uses the running statistics. Buffers: running_mean, running_var,
    num_batches_tracked (PyTorch's state-dict keys). ``affine``, ``track_running_stats`` and
    ``momentum=None`` as in :class:`vectorized.layers.BatchNorm1d`.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True):
        super().__init__(num_features, eps, momentum, affine, track_running_stats)

    def forward(self, x):
        check_nhwc(x, self.num_features, f"BatchNorm2D({self.num_features})")
        self.x_shape = x.shape
        return self.normalize(x.reshape(-1, self.num_features)).reshape(x.shape)

    def backward(self, grad_out):
        return self.normalize_backward(grad_out.reshape(-1, self.num_features)).reshape(self.x_shape)

    def extra_repr(self):
        s = f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"
        s += "" if self.affine else ", affine=False"
        return s + ("" if self.track_running_stats else ", track_running_stats=False")


@accelerated("forward", "backward")
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
        var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)          # biased, over C
        self.inv_std = 1 / xp.sqrt(var + self.eps)                       # (N, H, W, 1)
        self.x_hat = (x - mean) * self.inv_std
        return self.x_hat * self.weight.data + self.bias.data

    def backward(self, grad_out):
        axes = tuple(range(grad_out.ndim - 1))
        self.weight.grad += (grad_out * self.x_hat).sum(axis=axes)
        self.bias.grad += grad_out.sum(axis=axes)
        g = grad_out * self.weight.data                                  # dL/dx_hat
        # the direct path, the path through the mean and the path through the variance (per position)
        return self.inv_std * (g - g.mean(axis=-1, keepdims=True)
                               - self.x_hat * (g * self.x_hat).mean(axis=-1, keepdims=True))

    def extra_repr(self):
        return f"{self.num_channels}, eps={self.eps}"
