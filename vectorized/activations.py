"""Activation functions as Modules: y = f(x) elementwise, dL/dx = f'(x) * dL/dy.

Each forward is written so that it never overflows in float32 (no ``exp`` of a large
positive number) and each backward is the exact derivative of what the forward computed.
Shapes: any ``x``; the output has the same shape (Softmax normalises along ``axis``).
"""
from __future__ import annotations

import math

import numpy as np

from common.backend import xp
from common.dispatch import accelerated
from common.errors import UserError
from vectorized.layers import Identity
from vectorized.module import Module, parameter


@accelerated("forward", "backward")
class ReLU(Module):
    """max(x, 0); its slope is 1 where x > 0 and 0 elsewhere."""

    def forward(self, x):
        self.x = x
        return xp.maximum(x, 0)

    def backward(self, grad_out):
        return grad_out * (self.x > 0)


@accelerated("forward", "backward")
class LeakyReLU(Module):
    """x if x > 0 else negative_slope * x."""

    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = float(negative_slope)

    def forward(self, x):
        self.x = x
        return xp.where(x > 0, x, x * self.negative_slope)

    def backward(self, grad_out):
        return xp.where(self.x > 0, grad_out, grad_out * self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class ELU(Module):
    """x if x > 0 else alpha * (exp(x) - 1)."""

    def __init__(self, alpha: float = 1.0):
        super().__init__()
        self.alpha = float(alpha)

    def forward(self, x):
        self.x = x
        self.neg = self.alpha * xp.expm1(xp.minimum(x, 0))  # exp only of x <= 0: no overflow
        return xp.where(x > 0, x, self.neg)

    def backward(self, grad_out):
        # d/dx alpha*(e^x - 1) = alpha*e^x = neg + alpha
        return xp.where(self.x > 0, grad_out, grad_out * (self.neg + self.alpha))

    def extra_repr(self):
        return f"alpha={self.alpha}"


def sigmoid(x):
    """1 / (1 + e^-x), computed from e^-|x| <= 1 so neither branch can overflow."""
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))


class Sigmoid(Module):
    """sigma(x) = 1 / (1 + e^-x); sigma' = sigma (1 - sigma)."""

    def forward(self, x):
        self.y = sigmoid(x)
        return self.y

    def backward(self, grad_out):
        return grad_out * self.y * (1 - self.y)


class Tanh(Module):
    """tanh(x); tanh' = 1 - tanh^2."""

    def forward(self, x):
        self.y = xp.tanh(x)
        return self.y

    def backward(self, grad_out):
        return grad_out * (1 - self.y * self.y)


class SiLU(Module):
    """x * sigma(x) (also called swish); derivative sigma + x sigma (1 - sigma)."""

    def forward(self, x):
        self.x, self.s = x, sigmoid(x)
        return x * self.s

    def backward(self, grad_out):
        s = self.s
        return grad_out * (s + self.x * s * (1 - s))


@accelerated("forward", "backward")
class ReLU6(Module):
    """min(max(x, 0), 6), the clipped ReLU of MobileNet; its slope is 1 where 0 < x < 6."""

    def forward(self, x):
        self.x = x
        return xp.clip(x, 0, 6)

    def backward(self, grad_out):
        return grad_out * ((self.x > 0) & (self.x < 6))


# ----------------------------------------------------------------------------- GELU
# erfc(z) for z >= 0 by the Chebyshev fit of Numerical Recipes (erfcc): relative error
# below 1.2e-7 everywhere, which is float32's own precision. The fit is
#   erfc(z) = t * exp(-z^2 + P(t)),   t = 1 / (1 + z/2),
# and GELU's backward differentiates exactly this formula, so a float64 finite-difference
# check agrees with it to 1e-10 even though it is not the true erfc to that accuracy.
_ERFC_COEFFS = (-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806,
                0.27886807, -1.13520398, 1.48851587, -0.82215223, 0.17087277)


def _erfc_and_derivative(z):
    """erfc(z) and d erfc/dz for z >= 0 (elementwise)."""
    t = 1 / (1 + 0.5 * z)
    p, dp = 0.0, 0.0  # P(t) and P'(t) by Horner's rule
    for c in reversed(_ERFC_COEFFS):
        dp = dp * t + p
        p = p * t + c
    value = t * xp.exp(p - z * z)
    dt_dz = -0.5 * t * t
    # d/dz [t e^(P(t) - z^2)] = e^(...) * (t' + t (P'(t) t' - 2z))
    return value, value / t * (dt_dz + t * (dp * dt_dz - 2 * z))


def normal_cdf(x):
    """Phi(x) = P(N(0,1) <= x) = erfc(-x / sqrt 2) / 2, and its derivative.

    float32 input uses the rational fit above (error ~1e-7, below float32's resolution);
    float64 input uses :func:`_erf_series`, accurate to ~1e-16, so float64 gradient checks and the
    scalar-tier parity (which uses ``math.erf``) agree to 1e-9 and beyond.
    """
    if x.dtype == xp.float64:
        cdf = 0.5 * (1 + _erf_series(x * (1 / math.sqrt(2))))
        return cdf, xp.exp(-0.5 * x * x) * (1 / math.sqrt(2 * math.pi))
    z = xp.abs(x) * (1 / math.sqrt(2))
    tail, dtail = _erfc_and_derivative(z)  # tail = P(N >= |x|) * 2
    cdf = xp.where(x >= 0, 1 - 0.5 * tail, 0.5 * tail)
    return cdf, -0.5 * dtail * (1 / math.sqrt(2))


def _erf_series(x, z_max: float = 6.0):
    """erf(x) in float64: (2/sqrt(pi)) e^{-z^2} sum_n (2 z^2)^n z / (1*3*...*(2n+1)), z = |x|.

    Every term is positive, so nothing cancels; beyond |x| = 6, erf is 1 to within 1e-17.
    """
    z = xp.minimum(xp.abs(x), z_max)
    z2 = z * z
    term = z.copy()
    total = z.copy()
    for n in range(int(2 * z_max * z_max) + 60):  # terms shrink once n > z^2; ~130 terms reach 1e-17
        term *= 2 * z2 / (2 * n + 3)
        total += term
    return xp.sign(x) * (2 / math.sqrt(math.pi)) * xp.exp(-z2) * total


def erf(x):
    """erf(x) with xp only: ~1e-16 in float64, ~1e-7 (relative in erfc) in float32."""
    cdf, _ = normal_cdf(x * math.sqrt(2))
    return 2 * cdf - 1


@accelerated("forward", "backward")
class GELU(Module):
    """x * Phi(x); ``approximate='tanh'`` uses 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""

    def __init__(self, approximate: str = "none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise UserError(f"GELU approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x):
        self.x = x
        if self.approximate == "tanh":
            k = math.sqrt(2 / math.pi)
            self.th = xp.tanh(k * (x + 0.044715 * x * x * x))
            return 0.5 * x * (1 + self.th)
        cdf, pdf = normal_cdf(x)
        self.slope = cdf + x * pdf          # d/dx [x Phi(x)] = Phi(x) + x phi(x)
        return x * cdf

    def backward(self, grad_out):
        x = self.x
        if self.approximate == "tanh":
            k = math.sqrt(2 / math.pi)
            du = k * (1 + 3 * 0.044715 * x * x)
            return grad_out * (0.5 * (1 + self.th) + 0.5 * x * (1 - self.th * self.th) * du)
        return grad_out * self.slope

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


class Softmax(Module):
    """exp(x_i - max) / sum_j exp(x_j - max) along ``axis``.

    Backward: dL/dx = s * (g - sum(g * s)), the Jacobian diag(s) - s s^T applied to g.
    """

    def __init__(self, axis: int = -1):
        super().__init__()
        self.axis = axis

    def forward(self, x):
        if x.size == 0:  # an empty batch: no maximum to subtract
            self.s = x.copy()
            return self.s
        e = xp.exp(x - x.max(axis=self.axis, keepdims=True))
        self.s = e / e.sum(axis=self.axis, keepdims=True)
        return self.s

    def backward(self, grad_out):
        s = self.s
        return s * (grad_out - (grad_out * s).sum(axis=self.axis, keepdims=True))

    def extra_repr(self):
        return f"axis={self.axis}"


class LogSoftmax(Module):
    """log softmax along ``dim`` (PyTorch's keyword): y = x - max - log sum_j exp(x_j - max).

    Backward: dL/dx = g - softmax(x) * sum(g), summed along ``dim``.
    """

    def __init__(self, dim: int = -1):
        super().__init__()
        self.dim = int(dim)

    def forward(self, x):
        if x.size == 0:  # an empty batch: no maximum to subtract
            self.y = x.copy()
            return self.y
        shifted = x - x.max(axis=self.dim, keepdims=True)
        self.y = shifted - xp.log(xp.exp(shifted).sum(axis=self.dim, keepdims=True))
        return self.y

    def backward(self, grad_out):
        return grad_out - xp.exp(self.y) * grad_out.sum(axis=self.dim, keepdims=True)

    def extra_repr(self):
        return f"dim={self.dim}"


# ------------------------------------------------------------ smooth and hard variants
def softplus(x):
    """log(1 + e^x) = max(x, 0) + log(1 + e^-|x|), which never overflows."""
    return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))


class Softplus(Module):
    """(1/beta) log(1 + e^(beta x)), and x itself where beta x > threshold (PyTorch's switch to the
    line it approaches). Its slope is sigmoid(beta x), or 1 above the threshold."""

    def __init__(self, beta: float = 1.0, threshold: float = 20.0):
        super().__init__()
        self.beta, self.threshold = float(beta), float(threshold)

    def forward(self, x):
        self.x = x
        bx = self.beta * x
        return xp.where(bx > self.threshold, x, softplus(bx) / self.beta)

    def backward(self, grad_out):
        bx = self.beta * self.x
        return grad_out * xp.where(bx > self.threshold, 1.0, sigmoid(bx))

    def extra_repr(self):
        return f"beta={self.beta}, threshold={self.threshold}"


class Mish(Module):
    """x tanh(softplus(x)); derivative tanh(sp) + x (1 - tanh(sp)^2) sigmoid(x)."""

    def forward(self, x):
        self.x, self.t = x, xp.tanh(softplus(x))
        return x * self.t

    def backward(self, grad_out):
        return grad_out * (self.t + self.x * (1 - self.t * self.t) * sigmoid(self.x))


class Hardsigmoid(Module):
    """relu6(x + 3) / 6: 0 below -3, 1 above 3, a line between; slope 1/6 where -3 < x < 3."""

    def forward(self, x):
        self.x = x
        return xp.clip(x + 3, 0, 6) / 6

    def backward(self, grad_out):
        return grad_out * (((self.x > -3) & (self.x < 3)) / 6)


class Hardswish(Module):
    """x relu6(x + 3) / 6 (MobileNetV3); slope 0 up to -3, x/3 + 1/2 between, 1 from 3 on
    (PyTorch's choice at the two kinks)."""

    def forward(self, x):
        self.x = x
        return x * xp.clip(x + 3, 0, 6) / 6

    def backward(self, grad_out):
        x = self.x
        return grad_out * xp.where(x <= -3, 0.0, xp.where(x < 3, x / 3 + 0.5, 1.0))


class PReLU(Module):
    """x where x > 0, a x elsewhere, with a *learnable* slope a: one shared (``num_parameters=1``)
    or one per channel, starting at ``init``.   dL/dx = g or a g;  dL/da = sum of g x where x <= 0.

    The channel axis is PyTorch's axis 1 for (N, C) and (N, C, L), and the last axis for the
    conv tier's channels-last (N, H, W, C).
    """

    def __init__(self, num_parameters: int = 1, init: float = 0.25):
        super().__init__()
        self.num_parameters = int(num_parameters)
        self.weight = parameter(np.full(self.num_parameters, float(init)))

    def _slope(self, x):
        """The slope broadcast against x, and the axes that the slope's gradient sums over."""
        if self.num_parameters == 1:
            return self.weight.data.reshape((1,) * x.ndim), tuple(range(x.ndim))
        axis = x.ndim - 1 if x.ndim == 4 else 1
        if x.ndim < 2 or x.shape[axis] != self.num_parameters:
            raise UserError(f"PReLU({self.num_parameters}) got input of shape {tuple(x.shape)}; its channel "
                            f"axis (1, or the last of (N, H, W, C)) must have {self.num_parameters} entries")
        shape = [1] * x.ndim
        shape[axis] = self.num_parameters
        return self.weight.data.reshape(shape), tuple(a for a in range(x.ndim) if a != axis)

    def forward(self, x):
        self.x = x
        a, _ = self._slope(x)
        return xp.where(x > 0, x, a * x)

    def backward(self, grad_out):
        a, axes = self._slope(self.x)
        negative = self.x <= 0
        self.weight.grad += (grad_out * self.x * negative).sum(axis=axes).reshape(self.num_parameters)
        return xp.where(negative, a * grad_out, grad_out)

    def extra_repr(self):
        return f"num_parameters={self.num_parameters}"


_FACTORIES = {
    "relu": lambda **kw: ReLU(),
    "leaky_relu": lambda negative_slope=0.01, **kw: LeakyReLU(negative_slope),
    "elu": lambda alpha=1.0, **kw: ELU(alpha),
    "sigmoid": lambda **kw: Sigmoid(),
    "tanh": lambda **kw: Tanh(),
    "gelu": lambda **kw: GELU("none"),
    "gelu_tanh": lambda **kw: GELU("tanh"),
    "silu": lambda **kw: SiLU(),
    "relu6": lambda **kw: ReLU6(),
    "softplus": lambda **kw: Softplus(),
    "mish": lambda **kw: Mish(),
    "hardswish": lambda **kw: Hardswish(),
    "hardsigmoid": lambda **kw: Hardsigmoid(),
    "prelu": lambda **kw: PReLU(),
    "linear": lambda **kw: Identity(),
    "identity": lambda **kw: Identity(),
}
#: Every name :func:`get_activation` accepts.
ACTIVATION_NAMES = tuple(_FACTORIES)


def get_activation(name: str, **kw) -> Module:
    """A fresh activation module by name; ``negative_slope`` (leaky_relu) and ``alpha`` (elu)
    are taken from ``kw`` and other keywords are ignored, so one kwargs dict serves all."""
    key = str(name).lower().replace("-", "_")
    if key not in _FACTORIES:
        raise UserError(f"unknown activation {name!r}; choose one of: {', '.join(ACTIVATION_NAMES)}")
    return _FACTORIES[key](**kw)
