"""Learning-rate schedules. Each wraps an optimizer (or a Lookahead around one) and sets its ``lr``.

``schedule.step(metric=None)`` advances the schedule by one unit and writes the new lr;
``per`` says what a unit is, 'epoch' or 'step' (one batch): the trainer calls ``step()`` after
each epoch or after each batch accordingly. ``get_lr()`` is the lr for the current count ``t``;
the constructor already writes ``get_lr()`` for t = 0. Sequences equal PyTorch's schedulers
(StepLR, MultiStepLR, CosineAnnealingLR, LinearLR -> CosineAnnealingLR, CosineAnnealingWarmRestarts,
ReduceLROnPlateau) for the same settings.
"""
from __future__ import annotations

import math

from common.errors import UserError

_PER = ("epoch", "step")


class Schedule:
    """Base: ``t`` counts calls to ``step()``; subclasses define ``get_lr()``."""

    def __init__(self, optimizer, per: str = "epoch"):
        if per not in _PER:
            raise UserError(f"a schedule steps per 'epoch' or per 'step', got {per!r}")
        self.optimizer, self.per = optimizer, per
        self.base_lr = float(optimizer.lr)
        self.t = 0
        self.optimizer.lr = self.get_lr()

    def get_lr(self) -> float:
        raise NotImplementedError

    def step(self, metric=None) -> float:
        """Advance by one epoch/step and set the optimizer's lr; returns it."""
        self.t += 1
        self.optimizer.lr = self.get_lr()
        return self.optimizer.lr

    def state_dict(self) -> dict:
        return {"type": type(self).__name__, "t": self.t, "base_lr": self.base_lr, "per": self.per}

    def load_state_dict(self, state: dict) -> None:
        if state.get("type") != type(self).__name__:
            raise UserError(f"schedule state is for {state.get('type')}, not {type(self).__name__}")
        self.t, self.base_lr, self.per = int(state["t"]), float(state["base_lr"]), str(state["per"])
        self.optimizer.lr = self.get_lr()


class StepLR(Schedule):
    """lr = base * gamma^floor(t / step_size)."""

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1, per: str = "epoch"):
        if int(step_size) < 1:
            raise UserError(f"step_size must be >= 1, got {step_size}")
        self.step_size, self.gamma = int(step_size), float(gamma)
        super().__init__(optimizer, per)

    def get_lr(self):
        return self.base_lr * self.gamma ** (self.t // self.step_size)


class MultiStepLR(Schedule):
    """lr = base * gamma^(number of milestones <= t)."""

    def __init__(self, optimizer, milestones, gamma: float = 0.1, per: str = "epoch"):
        self.milestones, self.gamma = sorted(int(m) for m in milestones), float(gamma)
        super().__init__(optimizer, per)

    def get_lr(self):
        return self.base_lr * self.gamma ** sum(self.t >= m for m in self.milestones)


class CosineAnnealing(Schedule):
    """Linear warm-up for ``warmup`` units, lr = base (t+1)/warmup, then half a cosine from
    base down to ``min_lr`` over the remaining ``total - warmup`` units; ``min_lr`` after ``total``.

    lr = min_lr + (base - min_lr) (1 + cos(pi s / S)) / 2,  s = t - warmup,  S = total - warmup.
    """

    def __init__(self, optimizer, total: int, min_lr: float = 0.0, warmup: int = 0, per: str = "epoch"):
        if int(total) < 1 or not 0 <= int(warmup) < int(total):
            raise UserError(f"cosine schedule needs total >= 1 and 0 <= warmup < total, "
                            f"got total={total}, warmup={warmup}")
        self.total, self.min_lr, self.warmup = int(total), float(min_lr), int(warmup)
        super().__init__(optimizer, per)

    def get_lr(self):
        if self.t < self.warmup:
            return self.base_lr * (self.t + 1) / self.warmup
        s, S = min(self.t - self.warmup, self.total - self.warmup), self.total - self.warmup
        return self.min_lr + (self.base_lr - self.min_lr) * (1 + math.cos(math.pi * s / S)) / 2


class CosineWarmRestarts(Schedule):
    """SGDR: cosine from base to ``min_lr`` over T_0 units, restart at base, the next period
    T_mult times longer: T_0, T_0 T_mult, T_0 T_mult^2, ..."""

    def __init__(self, optimizer, T_0: int, T_mult: int = 1, min_lr: float = 0.0, per: str = "epoch"):
        if int(T_0) < 1 or int(T_mult) < 1:
            raise UserError(f"warm restarts need T_0 >= 1 and T_mult >= 1, got T_0={T_0}, T_mult={T_mult}")
        self.T_0, self.T_mult, self.min_lr = int(T_0), int(T_mult), float(min_lr)
        super().__init__(optimizer, per)

    def get_lr(self):
        t_cur, period = self.t, self.T_0
        while t_cur >= period:  # which period is t in, and how far into it
            t_cur -= period
            period *= self.T_mult
        return self.min_lr + (self.base_lr - self.min_lr) * (1 + math.cos(math.pi * t_cur / period)) / 2


class ReduceLROnPlateau(Schedule):
    """Multiply lr by ``factor`` when the metric has not improved for more than ``patience``
    calls. Improvement is relative: a < best (1 - threshold) in 'min' mode, a > best (1 + threshold)
    in 'max' mode. After a cut, ``cooldown`` calls pass before bad calls count again.
    Needs ``step(metric)``; always per epoch (the metric is a validation score)."""

    def __init__(self, optimizer, mode: str = "min", factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, min_lr: float = 0.0, cooldown: int = 0):
        if mode not in ("min", "max"):
            raise UserError(f"plateau mode must be 'min' or 'max', got {mode!r}")
        if not 0.0 < float(factor) < 1.0:
            raise UserError(f"plateau factor must be in (0, 1), got {factor}")
        self.mode, self.factor, self.patience = mode, float(factor), int(patience)
        self.threshold, self.min_lr, self.cooldown = float(threshold), float(min_lr), int(cooldown)
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad, self.cooldown_left = 0, 0
        self.lr = float(optimizer.lr)
        super().__init__(optimizer, "epoch")

    def get_lr(self):
        return self.lr

    def improved(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best * (1 - self.threshold)
        return value > self.best * (1 + self.threshold)

    def step(self, metric=None) -> float:
        if metric is None:
            raise UserError("ReduceLROnPlateau.step() needs the monitored metric")
        value = float(metric)
        self.t += 1
        if self.improved(value):
            self.best, self.num_bad = value, 0
        else:
            self.num_bad += 1
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.num_bad = 0
        if self.num_bad > self.patience:
            new_lr = max(self.lr * self.factor, self.min_lr)
            if self.lr - new_lr > 1e-8:  # PyTorch's eps: ignore cuts too small to matter
                self.lr = new_lr
            self.cooldown_left, self.num_bad = self.cooldown, 0
        self.optimizer.lr = self.lr
        return self.lr

    def state_dict(self) -> dict:
        state = super().state_dict()
        state.update(lr=self.lr, best=self.best, num_bad=self.num_bad, cooldown_left=self.cooldown_left)
        return state

    def load_state_dict(self, state: dict) -> None:
        self.lr, self.best = float(state["lr"]), float(state["best"])
        self.num_bad, self.cooldown_left = int(state["num_bad"]), int(state["cooldown_left"])
        super().load_state_dict(state)


#: Names accepted by :func:`make_schedule` (the CLI's ``--lr-schedule``).
SCHEDULE_NAMES = ("none", "step", "multistep", "cosine", "plateau", "restarts")


def make_schedule(name: str, optimizer, epochs: int, steps_per_epoch: int = 1, per: str = "epoch",
                  step_size: int | None = None, milestones=None, gamma: float = 0.1, min_lr: float = 0.0,
                  warmup_epochs: int = 0, restart_epochs: int | None = None, restart_mult: int = 1,
                  factor: float = 0.1, patience: int = 10, threshold: float = 1e-4, mode: str = "min"):
    """A schedule by CLI name, or None for 'none'. Lengths are given in epochs and converted
    to steps when ``per='step'``. Defaults: 'step' decays every epochs//3, 'multistep' at 50% and
    75% of the run, 'restarts' restarts every epochs//3 epochs. 'plateau' is always per epoch."""
    key = str(name).lower()
    if key not in SCHEDULE_NAMES:
        raise UserError(f"unknown lr schedule {name!r}; choose one of: {', '.join(SCHEDULE_NAMES)}")
    if key == "none":
        return None
    if key == "plateau":
        return ReduceLROnPlateau(optimizer, mode, factor, patience, threshold, min_lr)
    unit = steps_per_epoch if per == "step" else 1
    epochs = max(int(epochs), 1)
    if key == "step":
        return StepLR(optimizer, (step_size or max(epochs // 3, 1)) * unit, gamma, per)
    if key == "multistep":
        milestones = milestones or sorted({max(epochs // 2, 1), max(3 * epochs // 4, 1)})
        return MultiStepLR(optimizer, [int(m) * unit for m in milestones], gamma, per)
    if key == "cosine":
        return CosineAnnealing(optimizer, epochs * unit, min_lr, warmup_epochs * unit, per)
    return CosineWarmRestarts(optimizer, (restart_epochs or max(epochs // 3, 1)) * unit, restart_mult,
                              min_lr, per)
