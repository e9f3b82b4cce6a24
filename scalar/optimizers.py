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
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.t = 0                                   # steps taken

    def gradients(self, neuron) -> list[float]:
        """The neuron's gradients with coupled L2 weight decay: g + wd * p (biases included, as PyTorch)."""
        g = neuron.gradients()
        if self.weight_decay:
            g = [gi + self.weight_decay * pi for gi, pi in zip(g, neuron.parameters())]
        return g

    def zero_grad(self) -> None:
        self.network.zero_grad()

    # ------------------------------------------------------------------ state
    # The state lives per neuron (weights then bias, like parameters()). For checkpoints it is
    # regrouped per parameter tensor in the vectorized optimizers' format, {'i.slot': array}
    # with i counting 0.weight, 0.bias, 3.weight, ..., so either tier can read it.
    _hyper: tuple = ()
    _slots: tuple = ()

    def state_dict(self) -> dict:
        state = {}
        for slot in self._slots:
            per_neuron = getattr(self, slot)
            if per_neuron[0] is None:                  # SGD's velocity before the first step
                continue
            i, start = 0, 0
            for layer in self.network.dense_layers():
                rows = per_neuron[start:start + len(layer.neurons)]
                state[f"{i}.{slot}"] = [row[:-1] for row in rows]
                state[f"{i + 1}.{slot}"] = [row[-1] for row in rows]
                i, start = i + 2, start + len(layer.neurons)
        out = {"type": type(self).__name__, "lr": self.lr, "step": self.t, "state": state}
        out.update({h: getattr(self, h) for h in self._hyper})
        return out

    def load_state_dict(self, state: dict) -> None:
        if state.get("type") != type(self).__name__:
            raise UserError(f"optimizer state is for {state.get('type')}, not {type(self).__name__}")
        self.lr, self.t = float(state["lr"]), int(state["step"])
        for h in self._hyper:
            setattr(self, h, type(getattr(self, h))(state[h]))
        for slot in self._slots:
            if f"0.{slot}" not in state["state"]:
                continue
            rows = []
            for i in range(0, 2 * len(self.network.dense_layers()), 2):
                weights, biases = state["state"][f"{i}.{slot}"], state["state"][f"{i + 1}.{slot}"]
                rows += [[float(v) for v in w] + [float(b)] for w, b in zip(weights, biases)]
            if [len(r) for r in rows] != [len(n.w) + 1 for n in self.neurons]:
                raise UserError(f"optimizer state '{slot}' does not fit this network")
            setattr(self, slot, rows)


class SGD(Optimizer):
    """v = mu * v + g (v = g on the first step);  p -= lr * (g + mu * v if nesterov else v)."""

    _hyper = ("momentum", "nesterov", "weight_decay")
    _slots = ("velocity",)

    def __init__(self, network, lr: float = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0):
        super().__init__(network, lr, weight_decay)
        if nesterov and momentum <= 0.0:
            raise UserError("Nesterov momentum needs --momentum > 0")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
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


class Adam(Optimizer):
    """m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  p -= lr * m_hat / (sqrt(v_hat) + eps)."""

    _hyper = ("beta1", "beta2", "eps", "weight_decay")
    _slots = ("m", "v")

    def __init__(self, network, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(network, lr, weight_decay)
        self.beta1, self.beta2 = float(betas[0]), float(betas[1])
        self.eps = float(eps)
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
