"""SGD (momentum, Nesterov, weight decay) and Adam, with PyTorch's update rules.

An optimizer walks the network's neurons and sees each one as one parameter list: its
weights, then its bias (``Neuron.parameters()``). The gradients it reads are the batch
means (the Trainer divides the accumulated sums by N), so weight decay and the learning
rate mean what they mean in PyTorch.
"""
from __future__ import annotations

import math

from common.errors import UserError


class Optimizer:
    def __init__(self, network, lr: float, weight_decay: float = 0.0):
        if lr <= 0.0:
            raise UserError(f"learning rate must be positive, got {lr}")
        if weight_decay < 0.0:
            raise UserError(f"weight decay must be >= 0, got {weight_decay}")
        self.network = network
        self.neurons = network.neurons()
        self.lr = lr
        self.weight_decay = weight_decay
        self.t = 0                                   # steps taken

    def gradients(self, neuron) -> list[float]:
        """The neuron's gradients with coupled L2 weight decay: g + wd * p (biases included, as PyTorch)."""
        g = neuron.gradients()
        if self.weight_decay:
            g = [gi + self.weight_decay * pi for gi, pi in zip(g, neuron.parameters())]
        return g

    def zero_grad(self) -> None:
        self.network.zero_grad()

    # State is stored per neuron; for checkpoints it is regrouped per layer with the network's names.
    def _per_layer(self, per_neuron: list) -> dict:
        out, i = {}, 0
        for name, layer in self.network.named_layers():
            rows = per_neuron[i:i + len(layer.neurons)]
            out[f"{name}.weight"] = [row[:-1] for row in rows]
            out[f"{name}.bias"] = [row[-1] for row in rows]
            i += len(layer.neurons)
        return out

    def _per_neuron(self, per_layer: dict) -> list:
        rows = []
        for name, _ in self.network.named_layers():
            for w, b in zip(per_layer[f"{name}.weight"], per_layer[f"{name}.bias"]):
                rows.append([float(v) for v in w] + [float(b)])
        return rows


class SGD(Optimizer):
    """v = mu * v + g (v = g on the first step);  p -= lr * (g + mu * v if nesterov else v)."""

    def __init__(self, network, lr: float = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0):
        super().__init__(network, lr, weight_decay)
        if nesterov and momentum <= 0.0:
            raise UserError("Nesterov momentum needs --momentum > 0")
        self.momentum = momentum
        self.nesterov = nesterov
        self.velocity = [None] * len(self.neurons)

    def step(self) -> None:
        self.t += 1
        lr, mu = self.lr, self.momentum
        for i, neuron in enumerate(self.neurons):
            g = self.gradients(neuron)
            if mu:
                v = self.velocity[i]
                v = list(g) if v is None else [mu * vi + gi for vi, gi in zip(v, g)]
                self.velocity[i] = v
                g = [gi + mu * vi for gi, vi in zip(g, v)] if self.nesterov else v
            neuron.set_parameters([p - lr * gi for p, gi in zip(neuron.parameters(), g)])

    def state_dict(self) -> dict:
        state = {"step": self.t}
        if self.momentum and self.velocity[0] is not None:
            state["momentum_buffer"] = self._per_layer(self.velocity)
        return state

    def load_state_dict(self, state: dict) -> None:
        self.t = int(state["step"])
        if "momentum_buffer" in state:
            self.velocity = self._per_neuron(state["momentum_buffer"])


class Adam(Optimizer):
    """m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  p -= lr * m_hat / (sqrt(v_hat) + eps)."""

    def __init__(self, network, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(network, lr, weight_decay)
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.m = [[0.0] * (len(n.w) + 1) for n in self.neurons]
        self.v = [[0.0] * (len(n.w) + 1) for n in self.neurons]

    def step(self) -> None:
        self.t += 1
        b1, b2, eps = self.beta1, self.beta2, self.eps
        # Bias corrections folded in as PyTorch does: step = lr / (1 - b1^t), denom = sqrt(v) / sqrt(1 - b2^t) + eps.
        step_size = self.lr / (1.0 - b1 ** self.t)
        root_c2 = math.sqrt(1.0 - b2 ** self.t)
        for i, neuron in enumerate(self.neurons):
            g = self.gradients(neuron)
            m = [b1 * mi + (1.0 - b1) * gi for mi, gi in zip(self.m[i], g)]
            v = [b2 * vi + (1.0 - b2) * gi * gi for vi, gi in zip(self.v[i], g)]
            self.m[i], self.v[i] = m, v
            neuron.set_parameters([p - step_size * (mi / (math.sqrt(vi) / root_c2 + eps))
                                   for p, mi, vi in zip(neuron.parameters(), m, v)])

    def state_dict(self) -> dict:
        return {"step": self.t, "exp_avg": self._per_layer(self.m), "exp_avg_sq": self._per_layer(self.v)}

    def load_state_dict(self, state: dict) -> None:
        self.t = int(state["step"])
        self.m = self._per_neuron(state["exp_avg"])
        self.v = self._per_neuron(state["exp_avg_sq"])


def make_optimizer(name: str, network, lr: float, weight_decay: float = 0.0, momentum: float = 0.9):
    """``sgd`` (no momentum), ``momentum``, ``nesterov`` or ``adam``."""
    if name == "sgd":
        return SGD(network, lr, weight_decay=weight_decay)
    if name == "momentum":
        return SGD(network, lr, momentum=momentum, weight_decay=weight_decay)
    if name == "nesterov":
        return SGD(network, lr, momentum=momentum, nesterov=True, weight_decay=weight_decay)
    if name == "adam":
        return Adam(network, lr, weight_decay=weight_decay)
    raise UserError(f"unknown optimizer {name!r}; choose sgd, momentum, nesterov or adam")
