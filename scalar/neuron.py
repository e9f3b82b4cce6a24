"""One neuron: a weighted sum of its inputs plus a bias, passed through an activation.

Forward:   z = w . x + b,   a = f(z)
Backward:  delta = dL/da * f'(z),   dL/dw_i += delta * x_i,   dL/db += delta
"""
from __future__ import annotations

from itertools import repeat
from operator import add, mul

from scalar.activations import Activation, get_activation


class Neuron:
    """Weights ``w`` (a list of floats, one per input) and a bias ``b``, with their gradients."""

    def __init__(self, weights, bias: float = 0.0, activation: str | Activation = "linear"):
        self.w = [float(v) for v in weights]
        self.b = float(bias)
        self.activation = get_activation(activation) if isinstance(activation, str) else activation
        self.zero_grad()

    def forward(self, x: list[float]) -> float:
        self.x = x                                       # kept for backward
        self.z = sum(map(mul, self.w, x)) + self.b
        self.a = self.activation.f(self.z)
        return self.a

    def backward(self, grad_a: float) -> float:
        """Accumulate dL/dw and dL/db for this sample; return delta = dL/dz."""
        self.delta = grad_a * self.activation.df(self.z)
        if self.delta != 0.0:                            # a dead ReLU or a dropped unit adds nothing
            self.grad_w = list(map(add, self.grad_w, map(mul, self.x, repeat(self.delta))))
            self.grad_b += self.delta
        return self.delta

    def zero_grad(self) -> None:
        self.grad_w = [0.0] * len(self.w)
        self.grad_b = 0.0

    # The optimizers see a neuron's parameters as one list: the weights, then the bias.
    def parameters(self) -> list[float]:
        return self.w + [self.b]

    def gradients(self) -> list[float]:
        return self.grad_w + [self.grad_b]

    def set_parameters(self, values: list[float]) -> None:
        self.w, self.b = values[:-1], values[-1]

    def __repr__(self):
        return f"Neuron(inputs={len(self.w)}, activation={self.activation.name})"
