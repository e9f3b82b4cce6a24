"""Losses: ``loss(predictions, targets)`` returns the loss, ``loss.backward()`` dL/dpredictions.

``reduction`` is PyTorch's: 'mean' (the default: an average, and the backward divides by the same
count, so every parameter gradient is the *mean* over the batch), 'sum', or 'none' (one loss per
sample or element, unreduced; then ``backward(grad_out)`` takes dL/dloss of that shape, ones when
left out). The mean of nothing (an empty batch) is NaN, as in PyTorch. Values stay on the device:
turning one into a Python float is a host sync, left to whoever logs it.
"""
from __future__ import annotations

from numbers import Number

from common.backend import xp
from common.dispatch import accelerated
from common.errors import UserError
from vectorized.activations import sigmoid

REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction):
    if reduction not in REDUCTIONS:
        raise UserError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
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
    """Base: ``__call__`` = ``forward``. A subclass's forward computes the unreduced losses and
    their derivatives, and hands them to :meth:`reduce`; :meth:`backward` scales the derivatives."""

    reduction = "mean"

    def __call__(self, predictions, targets):
        return self.forward(predictions, targets)

    def forward(self, predictions, targets):
        raise NotImplementedError

    def reduce(self, losses, derivative, count=None):
        """losses: the unreduced losses; derivative: d(each loss)/d(predictions), kept for backward.
        The mean divides by ``count`` (default: the number of losses)."""
        self.derivative, self.loss_shape = derivative, losses.shape
        if self.reduction == "none":
            self.scale = 1.0
            return losses
        if self.reduction == "sum":
            self.scale = 1.0
            return xp.asarray(losses.sum())
        # the mean of nothing is NaN and its gradient 0, as in PyTorch (computed on the device, no warning)
        count = xp.asarray(losses.size if count is None else count, dtype=losses.dtype)
        self.scale = xp.where(count > 0, 1 / xp.maximum(count, 1e-30), 0).astype(losses.dtype)
        return xp.where(count > 0, losses.sum() * self.scale, xp.nan).astype(losses.dtype)

    def backward(self, grad_out=None):
        """dL/dpredictions; ``grad_out`` is dL/dloss (a scalar, or the unreduced shape for 'none')."""
        if self.reduction == "none":
            upstream = 1.0 if grad_out is None else self.expand(xp.asarray(grad_out).reshape(self.loss_shape))
        else:
            upstream = self.scale if grad_out is None else grad_out * self.scale
        return self.derivative * upstream

    def expand(self, per_loss):
        """An unreduced loss's gradient, shaped to multiply ``derivative`` (elementwise losses: as is)."""
        return per_loss


@accelerated("forward", "backward")
class CrossEntropyLoss(Loss):
    """l_i = -sum_k c_ik log softmax(z_i)_k, with c_ik = weight_k q_ik, averaged, summed or one per sample.

    logits z: (N, K), or (N, K, d1, ...) with one distribution per position (per-pixel labels).
    targets: class indices (N,) / (N, d1, ...) of an integer dtype, or probabilities of z's shape
    (MixUp, CutMix). q is the one-hot label, with label smoothing eps (1 - eps) q + eps/K.

    Options as in PyTorch: ``weight`` (K,) a weight per class; ``ignore_index`` a label whose samples
    count for nothing. With class indices the mean is PyTorch's *weighted* mean, the sum divided
    by sum_i weight[y_i] over the samples not ignored; with probabilities it divides by N.
    Backward: dl_i/dz_i = (sum_k c_ik) softmax(z_i) - c_i.
    """

    def __init__(self, label_smoothing: float = 0.0, reduction: str = "mean", *, weight=None,
                 ignore_index: int = -100):
        if not isinstance(label_smoothing, Number):
            raise UserError("CrossEntropyLoss: the first argument is label_smoothing; pass class weights "
                            "as weight=...")
        if not 0.0 <= float(label_smoothing) <= 1.0:
            raise UserError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)
        self.reduction = _check_reduction(reduction)
        self.weight = None if weight is None else xp.asarray(weight)
        if self.weight is not None and self.weight.ndim != 1:
            raise UserError(f"CrossEntropyLoss: weight must be one number per class, got shape {self.weight.shape}")
        self.ignore_index = int(ignore_index)

    def forward(self, logits, targets):
        if logits.ndim < 2:
            raise UserError(f"CrossEntropyLoss expects logits (N, K) or (N, K, ...), got shape {tuple(logits.shape)}")
        k = logits.shape[1]
        if self.weight is not None and self.weight.shape[0] != k:
            raise UserError(f"CrossEntropyLoss: weight has {self.weight.shape[0]} entries for {k} classes")
        self.logits_shape = logits.shape
        z = xp.moveaxis(logits, 1, -1).reshape(-1, k)                       # (M, K): one row a distribution
        weight = xp.ones(k, dtype=logits.dtype) if self.weight is None else self.weight.astype(logits.dtype)
        class_indices = tuple(targets.shape) == (logits.shape[0], *logits.shape[2:])
        if class_indices:
            if not xp.issubdtype(targets.dtype, xp.integer):
                raise UserError(f"class-index targets must be integers, got dtype {targets.dtype}")
            labels = targets.reshape(-1)
            kept = labels != self.ignore_index
            if bool((((labels < 0) | (labels >= k)) & kept).any()):
                raise UserError(f"CrossEntropyLoss: class labels must be in 0..{k - 1} "
                                f"(or ignore_index={self.ignore_index}); check the labels against the logits")
            q = one_hot(xp.where(kept, labels, 0), k, logits.dtype) * kept[:, None]
            smooth = kept[:, None] * (self.label_smoothing / k)
            count = (weight[xp.where(kept, labels, 0)] * kept).sum()       # the weighted mean's divisor
        elif tuple(targets.shape) == tuple(logits.shape):
            q = xp.moveaxis(targets.astype(logits.dtype), 1, -1).reshape(-1, k)
            smooth, count = self.label_smoothing / k, q.shape[0]
        else:
            raise UserError(f"targets of shape {tuple(targets.shape)} do not fit logits {tuple(logits.shape)}; "
                            "give class indices (N, ...) or probabilities of the logits' shape")
        if self.label_smoothing:
            q = q * (1 - self.label_smoothing) + smooth
        c = q * weight                                                     # (M, K)
        logp = log_softmax(z)
        losses = -(c * logp).sum(axis=1)                                   # (M,)
        derivative = c.sum(axis=1, keepdims=True) * xp.exp(logp) - c
        out_shape = (logits.shape[0], *logits.shape[2:])
        return self.reduce(losses.reshape(out_shape), derivative, count)

    def backward(self, grad_out=None):
        d = super().backward(grad_out)                                     # (M, K)
        n, k, *rest = self.logits_shape
        return xp.moveaxis(d.reshape(n, *rest, k), -1, 1)

    def expand(self, per_loss):
        return per_loss.reshape(-1, 1)


def _check_same_shape(name, predictions, targets):
    if tuple(predictions.shape) != tuple(targets.shape):
        raise UserError(f"{name}: predictions {tuple(predictions.shape)} and targets "
                        f"{tuple(targets.shape)} differ in shape")


class MSELoss(Loss):
    """(y - t)^2 per element; the mean divides by their count (PyTorch's MSELoss). d/dy = 2 (y - t)."""

    def __init__(self, reduction: str = "mean"):
        self.reduction = _check_reduction(reduction)

    def forward(self, predictions, targets):
        _check_same_shape("MSELoss", predictions, targets)
        diff = predictions - targets.astype(predictions.dtype)
        return self.reduce(diff * diff, 2 * diff)


class L1Loss(Loss):
    """|y - t| per element. d/dy = sign(y - t) (0 where y = t, as in PyTorch)."""

    def __init__(self, reduction: str = "mean"):
        self.reduction = _check_reduction(reduction)

    def forward(self, predictions, targets):
        _check_same_shape("L1Loss", predictions, targets)
        diff = predictions - targets.astype(predictions.dtype)
        return self.reduce(xp.abs(diff), xp.sign(diff))


class HuberLoss(Loss):
    """Quadratic near 0, linear beyond ``delta``:  d = y - t,
    l = d^2 / 2 where |d| < delta, else delta (|d| - delta/2).  d/dy = d, or delta sign(d)."""

    def __init__(self, reduction: str = "mean", delta: float = 1.0):
        self.reduction = _check_reduction(reduction)
        if not float(delta) > 0:
            raise UserError(f"HuberLoss: delta must be positive, got {delta}")
        self.delta = float(delta)

    def forward(self, predictions, targets):
        _check_same_shape("HuberLoss", predictions, targets)
        d = predictions - targets.astype(predictions.dtype)
        inside = xp.abs(d) < self.delta
        losses = xp.where(inside, 0.5 * d * d, self.delta * (xp.abs(d) - 0.5 * self.delta))
        return self.reduce(losses, xp.where(inside, d, self.delta * xp.sign(d)))


class BCEWithLogitsLoss(Loss):
    """Binary cross-entropy of sigmoid(z) against t in [0, 1], elementwise, from the logits.

    l = -w [p t log s + (1 - t) log(1 - s)],  s = sigmoid(z), with ``weight`` w (broadcast over
    the elements) and ``pos_weight`` p (one per class, the last axis) scaling the positive term.
    Written as (1 - t) z + (1 + (p - 1) t) softplus(-z), where softplus(-z) = max(-z, 0) +
    log(1 + e^-|z|), it never overflows. d/dz = w [(1 - t) - (1 + (p - 1) t) sigmoid(-z)], which is
    w (s - t) when p = 1. The mean divides by the number of elements.
    """

    def __init__(self, reduction: str = "mean", *, weight=None, pos_weight=None):
        self.reduction = _check_reduction(reduction)
        self.weight = None if weight is None else xp.asarray(weight)
        self.pos_weight = None if pos_weight is None else xp.asarray(pos_weight)

    def forward(self, logits, targets):
        _check_same_shape("BCEWithLogitsLoss", logits, targets)
        t = targets.astype(logits.dtype)
        softplus_neg = xp.maximum(-logits, 0) + xp.log1p(xp.exp(-xp.abs(logits)))   # -log sigmoid(z)
        log_weight = 1.0 if self.pos_weight is None else 1 + (self.pos_weight.astype(logits.dtype) - 1) * t
        losses = (1 - t) * logits + log_weight * softplus_neg
        derivative = (1 - t) - log_weight * sigmoid(-logits)
        if self.weight is not None:
            w = self.weight.astype(logits.dtype)
            losses, derivative = losses * w, derivative * w
        return self.reduce(losses, derivative)


REGRESSION_LOSSES = ("mse", "mae", "huber")


def make_regression_loss(name: str, huber_delta: float = 1.0) -> Loss:
    """``mse`` (MSELoss), ``mae`` (L1Loss) or ``huber`` (HuberLoss with ``huber_delta``)."""
    if name == "mse":
        return MSELoss()
    if name == "mae":
        return L1Loss()
    if name == "huber":
        return HuberLoss(delta=huber_delta)
    raise UserError(f"unknown regression loss {name!r}; choose one of: {', '.join(REGRESSION_LOSSES)}")
