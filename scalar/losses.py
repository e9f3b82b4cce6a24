"""Losses for one sample. Each returns ``(loss, dL/doutputs)``.

A target is a class index or a list of class probabilities (one-hot or soft).
"""
from __future__ import annotations

import math
from operator import sub


def _as_distribution(target, num_classes: int) -> list[float]:
    if isinstance(target, (list, tuple)):
        return [float(t) for t in target]
    return [1.0 if k == int(target) else 0.0 for k in range(num_classes)]


def log_softmax(logits: list[float]) -> list[float]:
    """log p_k = z_k - log sum_j exp(z_j), with the max subtracted first so exp never overflows."""
    m = max(logits)
    log_sum = m + math.log(sum(math.exp(z - m) for z in logits))
    return [z - log_sum for z in logits]


def softmax(logits: list[float]) -> list[float]:
    return [math.exp(lp) for lp in log_softmax(logits)]


def cross_entropy(logits: list[float], target) -> tuple[float, list[float]]:
    """Softmax cross-entropy from logits: L = -sum_k t_k log p_k, dL/dz_k = p_k - t_k."""
    t = _as_distribution(target, len(logits))
    log_p = log_softmax(logits)
    loss = -sum(tk * lp for tk, lp in zip(t, log_p) if tk != 0.0)
    grad = list(map(sub, map(math.exp, log_p), t))
    return loss, grad


def mse(outputs: list[float], target) -> tuple[float, list[float]]:
    """Mean squared error over the outputs: L = mean_k (y_k - t_k)^2, dL/dy_k = 2 (y_k - t_k) / K."""
    t = _as_distribution(target, len(outputs))
    diff = list(map(sub, outputs, t))
    k = len(outputs)
    return sum(d * d for d in diff) / k, [2.0 * d / k for d in diff]


LOSSES = {"cross_entropy": cross_entropy, "mse": mse}
