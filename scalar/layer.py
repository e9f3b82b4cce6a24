"""A Layer is a list of neurons that all read the same input; DropoutLayer zeroes some inputs."""
from __future__ import annotations

import math
import random
from itertools import repeat
from operator import add, mul

from common.errors import UserError
from scalar.neuron import Neuron


class Layer:
    """``len(neurons)`` outputs, each computed by one Neuron from the whole input list."""

    def __init__(self, neurons: list[Neuron]):
        self.neurons = neurons

    @classmethod
    def random(cls, num_inputs: int, num_outputs: int, activation: str, rng: random.Random) -> "Layer":
        """Gaussian weights, zero biases. He (std sqrt(2/fan_in)) for the ReLU family, else LeCun (sqrt(1/fan_in))."""
        gain = 2.0 if activation in ("relu", "leaky_relu", "gelu") else 1.0
        std = math.sqrt(gain / num_inputs)
        return cls([Neuron([rng.gauss(0.0, std) for _ in range(num_inputs)], 0.0, activation)
                    for _ in range(num_outputs)])

    @property
    def num_inputs(self) -> int:
        return len(self.neurons[0].w)

    @property
    def activation(self) -> str:
        return self.neurons[0].activation.name

    def forward(self, x: list[float]) -> list[float]:
        return [n.forward(x) for n in self.neurons]

    def backward(self, grad_out: list[float], input_grad: bool = True) -> list[float] | None:
        """Each neuron accumulates its own gradients; dL/dx = sum over neurons of delta_j * w_j.

        ``input_grad=False`` skips dL/dx (the first layer: nobody needs the gradient of the image).
        """
        grad_in = [0.0] * self.num_inputs
        for neuron, g in zip(self.neurons, grad_out):
            delta = neuron.backward(g)
            if input_grad and delta != 0.0:
                grad_in = list(map(add, grad_in, map(mul, neuron.w, repeat(delta))))
        return grad_in if input_grad else None

    def zero_grad(self) -> None:
        for n in self.neurons:
            n.zero_grad()

    def __repr__(self):
        return f"Layer({self.num_inputs} -> {len(self.neurons)}, {self.activation})"


class DropoutLayer:
    """Inverted dropout: while training, each input is zeroed with probability p and the
    survivors are scaled by 1/(1-p), so evaluation needs no rescaling."""

    def __init__(self, p: float, rng: random.Random):
        if not 0.0 <= p < 1.0:
            raise UserError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p
        self.rng = rng
        self.training = True
        self.mask = None

    def forward(self, x: list[float]) -> list[float]:
        if not self.training or self.p == 0.0:
            self.mask = None
            return x
        keep = 1.0 / (1.0 - self.p)
        self.mask = [keep if self.rng.random() >= self.p else 0.0 for _ in x]
        return list(map(mul, x, self.mask))

    def backward(self, grad_out: list[float], input_grad: bool = True) -> list[float]:
        return grad_out if self.mask is None else list(map(mul, grad_out, self.mask))

    def __repr__(self):
        return f"DropoutLayer(p={self.p})"
