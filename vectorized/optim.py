"""Optimizers: SGD (momentum, Nesterov), Adam, AdamW, RMSprop, Lookahead, and global-norm clipping.

Every update follows ``torch.optim`` (same hyper-parameters, same order of operations), and
each works on the *mean* gradient that the loss's backward produced. An optimizer holds the
model's ``Parameter`` objects and changes ``p.data`` in place.

Notation in the docstrings: w a parameter, g its gradient, lr the learning rate, t the step.
"""
from __future__ import annotations

import math

import numpy as np

from common.backend import to_device, to_numpy, xp
from common.dispatch import accelerated
from common.errors import UserError


class Optimizer:
    """Base class: ``step()``, ``zero_grad()``, a settable ``lr``, ``state_dict()``.

    Subclasses list their hyper-parameters in ``_hyper`` and the names of their per-parameter
    state lists (each a list with one array, or None, per parameter) in ``_slots``.
    """

    _hyper: tuple = ()
    _slots: tuple = ()

    def __init__(self, params, lr: float):
        self.params = [p for p in params if p.trainable]
        if not self.params:
            raise UserError("the optimizer got no trainable parameters")
        if not lr > 0:
            raise UserError(f"learning rate must be positive, got {lr}")
        self.lr = lr
        self.t = 0  # steps taken
        for slot in self._slots:
            setattr(self, slot, [None] * len(self.params))

    @property
    def lr(self) -> float:
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        self._lr = float(value)  # a Python float keeps float32 updates float32

    def zero_grad(self) -> None:
        for p in self.params:
            p.zero_grad()

    def step(self) -> None:
        self.t += 1
        for i, p in enumerate(self.params):
            self.update(i, p)

    def update(self, i: int, p) -> None:
        """Apply the update rule to parameter ``p`` (index ``i`` into the state lists)."""
        raise NotImplementedError

    def _state(self, slot: str, i: int, p):
        """The state array ``slot`` of parameter i, created as zeros on first use."""
        arrays = getattr(self, slot)
        if arrays[i] is None:
            arrays[i] = xp.zeros_like(p.data)
        return arrays[i]

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """Plain values and host NumPy copies: {'type', 'lr', 'step', hyper..., 'state': {'i.slot': arr}}."""
        state = {f"{i}.{slot}": np.array(to_numpy(a), copy=True)
                 for slot in self._slots for i, a in enumerate(getattr(self, slot)) if a is not None}
        out = {"type": type(self).__name__, "lr": self.lr, "step": self.t, "state": state}
        out.update({h: getattr(self, h) for h in self._hyper})
        return out

    def load_state_dict(self, state: dict) -> None:
        if state.get("type") != type(self).__name__:
            raise UserError(f"optimizer state is for {state.get('type')}, not {type(self).__name__}")
        self.lr, self.t = state["lr"], int(state["step"])
        for h in self._hyper:
            setattr(self, h, type(getattr(self, h))(state[h]))
        for slot in self._slots:
            arrays = [None] * len(self.params)
            for i, p in enumerate(self.params):
                a = state["state"].get(f"{i}.{slot}")
                if a is not None:
                    if tuple(np.shape(a)) != tuple(p.shape):
                        raise UserError(f"optimizer state {i}.{slot} has shape {np.shape(a)}, "
                                        f"parameter {i} has {tuple(p.shape)}")
                    arrays[i] = to_device(np.array(a, copy=True), dtype=p.data.dtype)  # never alias the caller's
            setattr(self, slot, arrays)

    def __repr__(self):
        hyper = ", ".join(f"{h}={getattr(self, h)}" for h in self._hyper)
        return f"{type(self).__name__}(lr={self.lr}" + (f", {hyper})" if hyper else ")")


class SGD(Optimizer):
    """g += weight_decay * w (coupled L2);  then, with momentum mu:
    v = mu v + g (v = g at the first step);  d = g + mu v (Nesterov) or v;  w -= lr d."""

    _hyper = ("momentum", "nesterov", "weight_decay")
    _slots = ("velocity",)

    def __init__(self, params, lr: float = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0):
        super().__init__(params, lr)
        if nesterov and momentum <= 0:
            raise UserError("Nesterov momentum needs momentum > 0")
        self.momentum, self.nesterov, self.weight_decay = float(momentum), bool(nesterov), float(weight_decay)

    def update(self, i, p):
        g = p.grad
        if self.weight_decay:
            g = g + self.weight_decay * p.data
        if self.momentum:
            v = self.velocity[i]
            if v is None:
                v = self.velocity[i] = g.copy()
            else:
                v *= self.momentum
                v += g
            g = g + self.momentum * v if self.nesterov else v
        p.data -= self.lr * g


@accelerated("step", "update")
class Adam(Optimizer):
    """g += weight_decay * w (coupled L2, as torch.optim.Adam);
    m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
    w -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)   (bias-corrected moments)."""

    _hyper = ("beta1", "beta2", "eps", "weight_decay")
    _slots = ("m", "v")

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        super().__init__(params, lr)
        self.beta1, self.beta2 = float(betas[0]), float(betas[1])
        self.eps, self.weight_decay = float(eps), float(weight_decay)

    def decay(self, p):
        """The weight-decay part of the update; Adam adds it to the gradient."""
        return p.grad + self.weight_decay * p.data if self.weight_decay else p.grad

    def _factors(self):
        """This step's lr / (1 - b1^t) and 1 / sqrt(1 - b2^t)."""
        return self.lr / (1 - self.beta1 ** self.t), 1 / math.sqrt(1 - self.beta2 ** self.t)

    def update(self, i, p):
        g = self.decay(p)
        m, v = self._state("m", i, p), self._state("v", i, p)
        m *= self.beta1
        m += g * (1 - self.beta1)                       # m = b1 m + (1 - b1) g
        v *= self.beta2
        v += (g * g) * (1 - self.beta2)                 # v = b2 v + (1 - b2) g^2
        step_size, bias2 = self._factors()
        p.data -= (m / (xp.sqrt(v) * bias2 + self.eps)) * step_size


class AdamW(Adam):
    """Adam with *decoupled* weight decay: w -= lr * weight_decay * w, then the Adam step on g
    alone, so the decay is not rescaled by 1/sqrt(v) (Loshchilov & Hutter)."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2):
        super().__init__(params, lr, betas, eps, weight_decay)

    def decay(self, p):
        if self.weight_decay:
            p.data *= 1 - self.lr * self.weight_decay
        return p.grad


class RMSprop(Optimizer):
    """g += weight_decay * w;  s = alpha s + (1-alpha) g^2;  d = g / (sqrt(s) + eps);
    with momentum: b = mu b + d, w -= lr b;  without: w -= lr d."""

    _hyper = ("alpha", "eps", "momentum", "weight_decay")
    _slots = ("square_avg", "buffer")

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 momentum: float = 0.0, weight_decay: float = 0.0):
        super().__init__(params, lr)
        self.alpha, self.eps = float(alpha), float(eps)
        self.momentum, self.weight_decay = float(momentum), float(weight_decay)

    def update(self, i, p):
        g = p.grad + self.weight_decay * p.data if self.weight_decay else p.grad
        s = self._state("square_avg", i, p)
        s *= self.alpha
        s += (1 - self.alpha) * (g * g)
        d = g / (xp.sqrt(s) + self.eps)
        if self.momentum:
            b = self._state("buffer", i, p)
            b *= self.momentum
            b += d
            d = b
        p.data -= self.lr * d


class Lookahead(Optimizer):
    """Wraps any optimizer (the *fast* weights): every k inner steps the slow weights move
    alpha of the way towards the fast ones, and the fast weights restart from there:

        slow += alpha * (fast - slow);   fast = slow

    The slow weights are the weights at construction (step 0), as in Zhang et al. 2019.
    ``lr`` reads and writes the inner optimizer's, so schedules drive it through the wrapper.
    """

    def __init__(self, inner: Optimizer, k: int = 5, alpha: float = 0.5):
        if int(k) < 1 or not 0.0 < float(alpha) <= 1.0:
            raise UserError(f"Lookahead needs k >= 1 and 0 < alpha <= 1, got k={k}, alpha={alpha}")
        self.inner, self.k, self.alpha = inner, int(k), float(alpha)
        self.params = inner.params
        self.t = 0
        self.slow = [p.data.copy() for p in self.params]

    @property
    def lr(self) -> float:
        return self.inner.lr

    @lr.setter
    def lr(self, value: float) -> None:
        self.inner.lr = value

    def step(self) -> None:
        self.inner.step()
        self.t += 1
        if self.t % self.k == 0:
            for slow, p in zip(self.slow, self.params):
                slow += self.alpha * (p.data - slow)
                p.data[...] = slow

    def state_dict(self) -> dict:
        return {"type": "Lookahead", "lr": self.lr, "k": self.k, "alpha": self.alpha, "step": self.t,
                "slow": {str(i): np.array(to_numpy(s), copy=True) for i, s in enumerate(self.slow)},
                "inner": self.inner.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if state.get("type") != "Lookahead":
            raise UserError(f"optimizer state is for {state.get('type')}, not Lookahead")
        self.k, self.alpha, self.t = int(state["k"]), float(state["alpha"]), int(state["step"])
        self.slow = [to_device(np.array(state["slow"][str(i)], copy=True), dtype=p.data.dtype)
                     for i, p in enumerate(self.params)]
        self.inner.load_state_dict(state["inner"])

    def __repr__(self):
        return f"Lookahead({self.inner!r}, k={self.k}, alpha={self.alpha})"


def clip_grad_norm(params, max_norm: float):
    """Scale all gradients together so that their global L2 norm sqrt(sum ||g||^2) is at most
    ``max_norm``; returns the norm before clipping (0-d device array).

    The factor min(1, max_norm / (norm + 1e-6)) is computed on the device: no host sync.
    """
    grads = [p.grad for p in params if p.trainable]
    total = xp.sqrt(sum((g * g).sum() for g in grads))
    factor = xp.minimum(max_norm / (total + 1e-6), 1.0)
    for g in grads:
        g *= factor.astype(g.dtype)
    return xp.asarray(total)


#: Names accepted by :func:`make_optimizer` (the CLI's ``--optimizer``).
OPTIMIZER_NAMES = ("sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop")


def make_optimizer(name: str, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                   betas=(0.9, 0.999), eps: float = 1e-8, alpha: float = 0.99) -> Optimizer:
    """An optimizer by CLI name. 'sgd' is plain SGD (no momentum); 'momentum' and 'nesterov' use
    ``momentum``; 'rmsprop' uses no momentum; 'adamw' decouples ``weight_decay``."""
    key = str(name).lower()
    if key == "sgd":
        return SGD(params, lr, weight_decay=weight_decay)
    if key == "momentum":
        return SGD(params, lr, momentum=momentum, weight_decay=weight_decay)
    if key == "nesterov":
        return SGD(params, lr, momentum=momentum, nesterov=True, weight_decay=weight_decay)
    if key == "adam":
        return Adam(params, lr, betas, eps, weight_decay)
    if key == "adamw":
        return AdamW(params, lr, betas, eps, weight_decay)
    if key == "rmsprop":
        return RMSprop(params, lr, alpha, eps, weight_decay=weight_decay)
    raise UserError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZER_NAMES)}")
