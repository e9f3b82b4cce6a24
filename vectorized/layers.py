"""The tier-2 layers: Linear, BatchNorm1d, Dropout, Flatten, Identity.

Names, parameter layouts and state-dict keys are PyTorch's, so weights move both ways by name.
"""
from __future__ import annotations

import math

import numpy as np

from common.backend import DTYPE, to_device, xp
from common.dispatch import accelerated
from common.errors import UserError
from vectorized.init import canonical_scheme, init_weight
from vectorized.module import Module, parameter


@accelerated("forward", "backward")
class Linear(Module):
    """y = x @ W.T + b.   x: (..., in_features) -> y: (..., out_features), any leading dims.

    weight: (out_features, in_features), bias: (out_features,), initialised by ``init``
    (see :mod:`vectorized.init`; ``gain`` overrides the scheme's default) and zero bias.

    Each output is the scalar tier's neuron, y[n, j] = sum_i x[n, i] W[j, i] + b[j], for all
    n and j at once; the backward pass is three matrix products:
    dL/dx = g @ W,  dL/dW = g.T @ x,  dL/db = sum_n g  (n running over every leading index).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, init: str = "kaiming",
                 gain: float | None = None):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.init = canonical_scheme(init)
        self.weight = parameter(init_weight((out_features, in_features), init, in_features, out_features,
                                            gain=gain))
        self.bias = parameter(np.zeros(out_features)) if bias else None

    def check_input(self, x):
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise UserError(f"Linear({self.in_features}, {self.out_features}) got input of shape "
                            f"{tuple(x.shape)}; expected (..., {self.in_features})")

    def forward(self, x):
        self.check_input(x)
        self.x = x
        y = x @ self.weight.data.T
        if self.bias is not None:
            y += self.bias.data
        return y

    def backward(self, grad_out):
        g = grad_out.reshape(-1, self.out_features)                     # every leading index is a row
        self.weight.grad += g.T @ self.x.reshape(-1, self.in_features)  # dL/dW = g.T @ x   (out, in)
        if self.bias is not None:
            self.bias.grad += g.sum(axis=0)                             # dL/db = sum over the rows
        return grad_out @ self.weight.data                              # dL/dx = g @ W     (..., in)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, " \
               f"bias={self.bias is not None}, init={self.init!r}"


class BatchNorm1d(Module):
    """Batch normalisation per feature.   x: (N, C) or (N, C, L) -> the same shape.

    Training: y = gamma * (x - mean_B) / sqrt(var_B + eps) + beta, the statistics over every
    value of a channel (N of them, or N*L), with the *biased* batch variance; and
    running_stat = (1 - f) * running_stat + f * batch_stat, where the running variance takes the
    *unbiased* batch variance (x M/(M-1)), as in PyTorch. f is ``momentum``, or 1/t for the t-th
    batch when ``momentum=None`` (a plain average of every batch so far).
    Evaluation: the running statistics replace the batch statistics.

    Options as in PyTorch: ``affine=False`` (no gamma, beta), ``track_running_stats=False`` (no
    buffers; the batch statistics are used in evaluation too).
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True):
        super().__init__()
        self.num_features, self.eps, self.affine = int(num_features), float(eps), bool(affine)
        self.momentum = None if momentum is None else float(momentum)
        self.track_running_stats = bool(track_running_stats)
        if affine:
            self.weight = parameter(np.ones(num_features))   # gamma
            self.bias = parameter(np.zeros(num_features))    # beta
        if self.track_running_stats:
            self.register_buffer("running_mean", to_device(np.zeros(num_features), dtype=DTYPE))
            self.register_buffer("running_var", to_device(np.ones(num_features), dtype=DTYPE))
            self.register_buffer("num_batches_tracked", to_device(np.array(0), dtype=np.int64))

    def forward(self, x):
        if x.ndim not in (2, 3) or x.shape[1] != self.num_features:
            raise UserError(f"BatchNorm1d({self.num_features}) got input of shape {tuple(x.shape)}; "
                            f"expected (N, {self.num_features}) or (N, {self.num_features}, L)")
        if x.ndim == 2:
            return self.normalize(x)
        n, c, length = self.x_shape = x.shape               # (N, C, L) -> N*L rows of C
        y = self.normalize(x.transpose(0, 2, 1).reshape(n * length, c))
        return xp.ascontiguousarray(y.reshape(n, length, c).transpose(0, 2, 1))

    def backward(self, grad_out):
        if grad_out.ndim == 2:
            return self.normalize_backward(grad_out)
        n, c, length = self.x_shape
        dx = self.normalize_backward(grad_out.transpose(0, 2, 1).reshape(n * length, c))
        return xp.ascontiguousarray(dx.reshape(n, length, c).transpose(0, 2, 1))

    def normalize(self, x):
        """The layer on rows: x (M, C) -> y (M, C), one mean and variance per column."""
        m = x.shape[0]
        self.batch_stats = self.training or not self.track_running_stats
        if self.batch_stats and m == 1:
            raise UserError(f"{type(self).__name__} needs more than one value per channel in training mode "
                            "(more than 1 sample per batch, or a map larger than 1x1)")
        if self.training and self.track_running_stats:
            self.num_batches_tracked = self.num_batches_tracked + 1
        if m == 0:  # an empty batch: nothing to normalise, the running statistics stay (as in PyTorch)
            self.x_hat = x
            return x.copy()
        if self.batch_stats:
            mean = x.mean(axis=0)
            var = x.var(axis=0)  # biased: divides by M
            if self.training and self.track_running_stats:
                f = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean = (1 - f) * self.running_mean + f * mean
                self.running_var = (1 - f) * self.running_var + f * var * (m / (m - 1))
        else:
            mean, var = self.running_mean, self.running_var
        self.inv_std = 1 / xp.sqrt(var + self.eps)
        self.x_hat = (x - mean) * self.inv_std
        if not self.affine:
            return self.x_hat
        return self.x_hat * self.weight.data + self.bias.data

    def normalize_backward(self, grad_out):
        """dL/dx on rows (M, C) from dL/dy (M, C); gamma's and beta's gradients accumulate."""
        if self.affine:
            self.weight.grad += (grad_out * self.x_hat).sum(axis=0)
            self.bias.grad += grad_out.sum(axis=0)
            g = grad_out * self.weight.data  # dL/dx_hat
        else:
            g = grad_out
        n = g.shape[0]
        if n == 0:
            return g.copy()
        if not self.batch_stats:  # running statistics are constants
            return g * self.inv_std
        # mean and var depend on every x in the batch; the three terms are the direct path,
        # the path through the mean and the path through the variance.
        x_hat = self.x_hat
        return (self.inv_std / n) * (n * g - g.sum(axis=0) - x_hat * (g * x_hat).sum(axis=0))

    def extra_repr(self):
        s = f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}"
        return s + ("" if self.track_running_stats else ", track_running_stats=False")


class Dropout(Module):
    """Inverted dropout: in training each activation is zeroed with probability p and the
    survivors are scaled by 1/(1-p), so E[y] = x and evaluation is the identity.

    The mask comes from ``xp.random`` (made on the device): keep = random(x.shape) >= p.
    """

    def __init__(self, p: float = 0.5):
        super().__init__()
        p = float(p)
        if not 0.0 <= p < 1.0:
            raise UserError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p
        self.mask = None

    def forward(self, x):
        if not self.training or self.p == 0.0:
            self.mask = None
            return x
        keep = xp.random.random(x.shape) >= self.p
        self.mask = keep.astype(x.dtype) * (1.0 / (1.0 - self.p))
        return x * self.mask

    def backward(self, grad_out):
        return grad_out if self.mask is None else grad_out * self.mask

    def extra_repr(self):
        return f"p={self.p}"


class Flatten(Module):
    """(N, d1, d2, ...) -> (N, d1*d2*...), in C order (PyTorch's flatten of NCHW)."""

    def forward(self, x):
        self.in_shape = x.shape
        return x.reshape(x.shape[0], math.prod(x.shape[1:]))

    def backward(self, grad_out):
        return grad_out.reshape(self.in_shape)


class Identity(Module):
    """y = x (also the 'linear' activation)."""

    def forward(self, x):
        return x

    def backward(self, grad_out):
        return grad_out
