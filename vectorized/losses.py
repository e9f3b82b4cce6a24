"""Losses: ``loss(logits, targets)`` returns a 0-d device array, ``loss.backward()`` dL/dlogits.

With ``reduction='mean'`` the value is an average and the backward divides by the same count,
so every parameter gradient is the *mean* over the batch (PyTorch semantics). The value stays
on the device: turning it into a Python float is a host sync, left to whoever logs it.
"""
from __future__ import annotations

from common.backend import xp
from common.errors import UserError
from vectorized.activations import sigmoid

_REDUCTIONS = ("mean", "sum")


def _check_reduction(reduction):
    if reduction not in _REDUCTIONS:
        raise UserError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    return reduction


def log_softmax(z, axis=-1):
    """z - logsumexp(z), stable: the max is subtracted before exp."""
    shifted = z - z.max(axis=axis, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


def one_hot(labels, num_classes: int, dtype):
    """labels: (N,) integer device array -> (N, num_classes) of 0/1."""
    out = xp.zeros((labels.shape[0], num_classes), dtype=dtype)
    out[xp.arange(labels.shape[0]), labels] = 1
    return out


class Loss:
    """Base: ``__call__`` = ``forward``; subclasses cache what ``backward`` needs."""

    def __call__(self, logits, targets):
        return self.forward(logits, targets)

    def forward(self, logits, targets):
        raise NotImplementedError

    def backward(self):
        raise NotImplementedError


class CrossEntropyLoss(Loss):
    """-sum_k q_k log softmax(z)_k, averaged (or summed) over the N rows.

    logits z: (N, K). targets: class indices (N,) of an integer dtype, or soft targets (N, K)
    whose rows sum to 1 (MixUp, CutMix). Label smoothing eps replaces q by (1 - eps) q + eps/K.
    Backward: (softmax(z) - q) / N for the mean.
    """

    def __init__(self, label_smoothing: float = 0.0, reduction: str = "mean"):
        if not 0.0 <= float(label_smoothing) <= 1.0:
            raise UserError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)
        self.reduction = _check_reduction(reduction)

    def forward(self, logits, targets):
        if logits.ndim != 2:
            raise UserError(f"CrossEntropyLoss expects logits (N, K), got shape {tuple(logits.shape)}")
        n, k = logits.shape
        if targets.ndim == 1:
            if not xp.issubdtype(targets.dtype, xp.integer):
                raise UserError(f"class-index targets must be integers, got dtype {targets.dtype}")
            q = one_hot(targets, k, logits.dtype)
        elif tuple(targets.shape) == (n, k):
            q = targets.astype(logits.dtype)
        else:
            raise UserError(f"targets of shape {tuple(targets.shape)} do not fit logits {tuple(logits.shape)}; "
                            "give class indices (N,) or soft targets (N, K)")
        if self.label_smoothing:
            q = q * (1 - self.label_smoothing) + self.label_smoothing / k
        logp = log_softmax(logits)
        self.q, self.p = q, xp.exp(logp)
        self.scale = 1.0 / n if self.reduction == "mean" else 1.0
        return xp.asarray(-(q * logp).sum() * self.scale)

    def backward(self):
        return (self.p - self.q) * self.scale


class MSELoss(Loss):
    """sum (y - t)^2 over every element, divided by their count for the mean (PyTorch's MSELoss)."""

    def __init__(self, reduction: str = "mean"):
        self.reduction = _check_reduction(reduction)

    def forward(self, predictions, targets):
        if tuple(predictions.shape) != tuple(targets.shape):
            raise UserError(f"MSELoss: predictions {tuple(predictions.shape)} and targets "
                            f"{tuple(targets.shape)} differ in shape")
        self.diff = predictions - targets.astype(predictions.dtype)
        self.scale = 1.0 / self.diff.size if self.reduction == "mean" else 1.0
        return xp.asarray((self.diff * self.diff).sum() * self.scale)

    def backward(self):
        return 2 * self.diff * self.scale


class BCEWithLogitsLoss(Loss):
    """Binary cross-entropy of sigmoid(z) against t in [0, 1], elementwise, from the logits.

    -[t log s + (1-t) log(1-s)] = max(z, 0) - z t + log(1 + e^-|z|), which never overflows.
    Backward: (sigmoid(z) - t) / count.
    """

    def __init__(self, reduction: str = "mean"):
        self.reduction = _check_reduction(reduction)

    def forward(self, logits, targets):
        if tuple(logits.shape) != tuple(targets.shape):
            raise UserError(f"BCEWithLogitsLoss: logits {tuple(logits.shape)} and targets "
                            f"{tuple(targets.shape)} differ in shape")
        t = targets.astype(logits.dtype)
        self.t, self.s = t, sigmoid(logits)
        self.scale = 1.0 / logits.size if self.reduction == "mean" else 1.0
        losses = xp.maximum(logits, 0) - logits * t + xp.log1p(xp.exp(-xp.abs(logits)))
        return xp.asarray(losses.sum() * self.scale)

    def backward(self):
        return (self.s - self.t) * self.scale


class L1Loss(Loss):
    """Mean absolute error: sum |y - t| over every element, divided by their count for the mean.

    Backward: sign(y - t) / count (0 where y == t, as PyTorch's L1Loss).
    """

    def __init__(self, reduction: str = "mean"):
        self.reduction = _check_reduction(reduction)

    def forward(self, predictions, targets):
        if tuple(predictions.shape) != tuple(targets.shape):
            raise UserError(f"L1Loss: predictions {tuple(predictions.shape)} and targets "
                            f"{tuple(targets.shape)} differ in shape")
        self.diff = predictions - targets.astype(predictions.dtype)
        self.scale = 1.0 / self.diff.size if self.reduction == "mean" else 1.0
        return xp.asarray(xp.abs(self.diff).sum() * self.scale)

    def backward(self):
        return xp.sign(self.diff) * self.scale


class HuberLoss(Loss):
    """Huber loss with threshold delta, per element d = y - t:

        0.5 d^2                    where |d| <= delta   (squared error near the target)
        delta (|d| - 0.5 delta)    elsewhere            (absolute error far from it)

    so outliers pull with a bounded force. Backward: clip(d, -delta, delta) / count.
    """

    def __init__(self, delta: float = 1.0, reduction: str = "mean"):
        if not float(delta) > 0:
            raise UserError(f"the Huber delta must be positive, got {delta}")
        self.delta = float(delta)
        self.reduction = _check_reduction(reduction)

    def forward(self, predictions, targets):
        if tuple(predictions.shape) != tuple(targets.shape):
            raise UserError(f"HuberLoss: predictions {tuple(predictions.shape)} and targets "
                            f"{tuple(targets.shape)} differ in shape")
        self.diff = predictions - targets.astype(predictions.dtype)
        self.scale = 1.0 / self.diff.size if self.reduction == "mean" else 1.0
        a = xp.abs(self.diff)
        losses = xp.where(a <= self.delta, 0.5 * self.diff * self.diff, self.delta * (a - 0.5 * self.delta))
        return xp.asarray(losses.sum() * self.scale)

    def backward(self):
        return xp.clip(self.diff, -self.delta, self.delta) * self.scale


REGRESSION_LOSSES = ("mse", "mae", "huber")


def make_regression_loss(name: str, huber_delta: float = 1.0) -> Loss:
    """``mse`` (MSELoss), ``mae`` (L1Loss) or ``huber`` (HuberLoss with ``huber_delta``)."""
    if name == "mse":
        return MSELoss()
    if name == "mae":
        return L1Loss()
    if name == "huber":
        return HuberLoss(huber_delta)
    raise UserError(f"unknown regression loss {name!r}; choose one of: {', '.join(REGRESSION_LOSSES)}")
