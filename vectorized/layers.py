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
    """y = x @ W.T + b.   x: (N, in_features) -> y: (N, out_features).

    weight: (out_features, in_features), bias: (out_features,), initialised by ``init``
    (see :mod:`vectorized.init`; ``gain`` overrides the scheme's default) and zero bias.

    Each output is the scalar tier's neuron, y[n, j] = sum_i x[n, i] W[j, i] + b[j], for all
    n and j at once; the backward pass is three matrix products:
    dL/dx = g @ W,  dL/dW = g.T @ x,  dL/db = sum_n g.
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
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise UserError(f"Linear({self.in_features}, {self.out_features}) got input of shape "
                            f"{tuple(x.shape)}; expected (N, {self.in_features})")

    def forward(self, x):
        self.check_input(x)
        self.x = x
        y = x @ self.weight.data.T
        if self.bias is not None:
            y += self.bias.data
        return y

    def backward(self, grad_out):
        self.weight.grad += grad_out.T @ self.x       # dL/dW = g.T @ x   (out, in)
        if self.bias is not None:
            self.bias.grad += grad_out.sum(axis=0)    # dL/db = sum over the batch
        return grad_out @ self.weight.data            # dL/dx = g @ W     (N, in)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, " \
               f"bias={self.bias is not None}, init={self.init!r}"


class BatchNorm1d(Module):
    """Batch normalisation over the batch axis.   x: (N, C) -> y: (N, C).

    Training: y = gamma * (x - mean_B) / sqrt(var_B + eps) + beta with the *biased* batch
    variance, and running_stat = (1 - momentum) * running_stat + momentum * batch_stat, where
    the running variance takes the *unbiased* batch variance (x N/(N-1)), as in PyTorch.
    Evaluation: the running statistics replace the batch statistics.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True):
        super().__init__()
        self.num_features, self.eps, self.momentum, self.affine = int(num_features), float(eps), \
            float(momentum), bool(affine)
        if affine:
            self.weight = parameter(np.ones(num_features))   # gamma
            self.bias = parameter(np.zeros(num_features))    # beta
        self.register_buffer("running_mean", to_device(np.zeros(num_features), dtype=DTYPE))
        self.register_buffer("running_var", to_device(np.ones(num_features), dtype=DTYPE))
        self.register_buffer("num_batches_tracked", to_device(np.array(0), dtype=np.int64))

    def forward(self, x):
        if x.ndim != 2 or x.shape[1] != self.num_features:
            raise UserError(f"BatchNorm1d({self.num_features}) got input of shape {tuple(x.shape)}; "
                            f"expected (N, {self.num_features})")
        if self.training:
            n = x.shape[0]
            if n < 2:
                raise UserError(f"{type(self).__name__} needs more than one value per channel in training mode "
                                "(more than 1 sample per batch, or a map larger than 1x1)")
            mean = x.mean(axis=0)
            var = x.var(axis=0)  # biased: divides by N
            m = self.momentum
            self.running_mean = (1 - m) * self.running_mean + m * mean
            self.running_var = (1 - m) * self.running_var + m * var * (n / (n - 1))
            self.num_batches_tracked = self.num_batches_tracked + 1
        else:
            mean, var = self.running_mean, self.running_var
        self.inv_std = 1 / xp.sqrt(var + self.eps)
        self.x_hat = (x - mean) * self.inv_std
        if not self.affine:
            return self.x_hat
        return self.x_hat * self.weight.data + self.bias.data

    def backward(self, grad_out):
        if self.affine:
            self.weight.grad += (grad_out * self.x_hat).sum(axis=0)
            self.bias.grad += grad_out.sum(axis=0)
            g = grad_out * self.weight.data  # dL/dx_hat
        else:
            g = grad_out
        if not self.training:  # running statistics are constants
            return g * self.inv_std
        # mean and var depend on every x in the batch; the three terms are the direct path,
        # the path through the mean and the path through the variance.
        n = g.shape[0]
        x_hat = self.x_hat
        return (self.inv_std / n) * (n * g - g.sum(axis=0) - x_hat * (g * x_hat).sum(axis=0))

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}"


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
