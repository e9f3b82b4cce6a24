"""Activation functions and their derivatives, one Python float at a time.

Each activation is a pair: ``f(z)`` and its derivative ``f'(z)``, both taking the
pre-activation ``z``. A neuron multiplies the incoming gradient by ``f'(z)``.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

from common.errors import UserError

LEAKY_SLOPE = 0.01          # PyTorch's default negative_slope
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


class Activation(NamedTuple):
    name: str
    f: Callable[[float], float]
    df: Callable[[float], float]     # derivative with respect to z


def linear(z):          return z
def linear_grad(z):     return 1.0

def relu(z):            return z if z > 0.0 else 0.0
def relu_grad(z):       return 1.0 if z > 0.0 else 0.0          # 0 at z == 0, as PyTorch

def leaky_relu(z):      return z if z > 0.0 else LEAKY_SLOPE * z
def leaky_relu_grad(z): return 1.0 if z > 0.0 else LEAKY_SLOPE


def sigmoid(z):
    # Two branches so that exp never overflows: for z < 0 use e^z / (1 + e^z).
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def sigmoid_grad(z):
    s = sigmoid(z)
    return s * (1.0 - s)


def tanh(z):            return math.tanh(z)
def tanh_grad(z):       return 1.0 - math.tanh(z) ** 2


def gelu(z):
    """Exact GELU, z * Phi(z) with the Gaussian CDF Phi from math.erf (not the tanh approximation)."""
    return 0.5 * z * (1.0 + math.erf(z * _INV_SQRT2))


def gelu_grad(z):
    # d/dz [z * Phi(z)] = Phi(z) + z * phi(z), phi the Gaussian density.
    return 0.5 * (1.0 + math.erf(z * _INV_SQRT2)) + z * _INV_SQRT_2PI * math.exp(-0.5 * z * z)


ACTIVATIONS = {
    a.name: a for a in (
        Activation("linear", linear, linear_grad),
        Activation("relu", relu, relu_grad),
        Activation("leaky_relu", leaky_relu, leaky_relu_grad),
        Activation("sigmoid", sigmoid, sigmoid_grad),
        Activation("tanh", tanh, tanh_grad),
        Activation("gelu", gelu, gelu_grad),
    )
}


def get_activation(name: str) -> Activation:
    """The activation called ``name``; an unknown name is an error, never a silent linear layer."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise UserError(f"unknown activation {name!r}; choose from {', '.join(ACTIVATIONS)}") from None
