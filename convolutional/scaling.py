"""Layers that rescale a branch: SqueezeExcite, LayerScale, StochasticDepth.

All take channels-last (N, H, W, C) input (StochasticDepth and LayerScale any (N, ..., C)).
"""
from __future__ import annotations

import numpy as np

from common.backend import xp
from common.errors import UserError
from convolutional.conv import Conv2D
from convolutional.pooling import GlobalAvgPool2D
from vectorized.activations import Sigmoid, get_activation
from vectorized.module import Module, parameter


class SqueezeExcite(Module):
    """Channel attention (Hu et al. 2018).   (N, H, W, C) -> (N, H, W, C).

    s = sigmoid(fc2(act(fc1(mean_HW(x)))))  (N, 1, 1, C);  y = x * s.
    fc1 = Conv2D(C, squeeze, 1), fc2 = Conv2D(squeeze, C, 1), both with bias, named like
    torchvision's ``SqueezeExcitation`` so state-dict keys match.
    """

    def __init__(self, channels: int, squeeze_channels: int, activation: str = "relu"):
        super().__init__()
        self.channels, self.squeeze_channels = int(channels), int(squeeze_channels)
        self.avgpool = GlobalAvgPool2D(keepdims=True)
        self.fc1 = Conv2D(self.channels, self.squeeze_channels, 1)
        self.activation = get_activation(activation)
        self.fc2 = Conv2D(self.squeeze_channels, self.channels, 1)
        self.scale_activation = Sigmoid()

    def forward(self, x):
        self.x = x
        s = self.avgpool(x)
        self.s = self.scale_activation(self.fc2(self.activation(self.fc1(s))))
        return x * self.s

    def backward(self, grad_out):
        ds = (grad_out * self.x).sum(axis=(1, 2), keepdims=True)  # (N, 1, 1, C)
        ds = self.fc1.backward(self.activation.backward(self.fc2.backward(self.scale_activation.backward(ds))))
        dx = grad_out * self.s
        dx += self.avgpool.backward(ds)
        return dx

    def extra_repr(self):
        return f"{self.channels}, {self.squeeze_channels}"


class LayerScale(Module):
    """y = x * gamma with a learned per-channel gamma (dim,) on the last axis, initialised small."""

    def __init__(self, dim: int, init: float = 1e-6):
        super().__init__()
        self.dim = int(dim)
        self.gamma = parameter(np.full(self.dim, float(init)))

    def forward(self, x):
        if x.shape[-1] != self.dim:
            raise UserError(f"LayerScale({self.dim}) got input of shape {tuple(x.shape)}")
        self.x = x
        return x * self.gamma.data

    def backward(self, grad_out):
        self.gamma.grad += (grad_out * self.x).reshape(-1, self.dim).sum(axis=0)
        return grad_out * self.gamma.data

    def extra_repr(self):
        return f"{self.dim}"


class StochasticDepth(Module):
    """Drop a whole residual branch per sample (Huang et al. 2016; "drop path").

    Training: each sample's branch is kept with probability 1-p and scaled by 1/(1-p), so the
    expectation is unchanged (``mode='row'``; ``'batch'`` draws one decision for the batch).
    Evaluation, or p = 0: the identity.
    """

    def __init__(self, p: float, mode: str = "row"):
        super().__init__()
        self.p = float(p)
        if not 0.0 <= self.p <= 1.0:
            raise UserError(f"StochasticDepth probability must be in [0, 1], got {p}")
        if mode not in ("row", "batch"):
            raise UserError(f"StochasticDepth mode must be 'row' or 'batch', got {mode!r}")
        self.mode = mode
        self.mask = None

    def forward(self, x):
        if not self.training or self.p == 0.0:
            self.mask = None
            return x
        shape = (x.shape[0] if self.mode == "row" else 1,) + (1,) * (x.ndim - 1)
        survival = 1.0 - self.p
        keep = xp.random.random(shape) < survival
        self.mask = keep.astype(x.dtype)
        if survival > 0:
            self.mask *= 1.0 / survival
        return x * self.mask

    def backward(self, grad_out):
        return grad_out if self.mask is None else grad_out * self.mask

    def extra_repr(self):
        return f"p={self.p}, mode={self.mode!r}"
