"""Cross-entropy over every step of a sequence: next-character prediction, copy tasks.

    logits: (N, T, K), targets: (N, T) class ids  ->  mean over the N*T positions of
    -log softmax(logits[n, t])[targets[n, t]]

It is :class:`~vectorized.losses.CrossEntropyLoss` on the (N*T, K) reshape, so every position
weighs the same; (N, K) logits with (N,) targets pass straight through.
"""
from __future__ import annotations

from common.errors import UserError
from vectorized.losses import CrossEntropyLoss, Loss


class SequenceCrossEntropyLoss(Loss):
    def __init__(self, label_smoothing: float = 0.0):
        self.inner = CrossEntropyLoss(label_smoothing=label_smoothing)

    def forward(self, logits, targets):
        if logits.ndim == 2:
            self.shape = None
            return self.inner.forward(logits, targets)
        if logits.ndim != 3 or targets.ndim != 2:
            raise UserError(f"sequence cross-entropy needs logits (N, T, K) and targets (N, T), got "
                            f"{tuple(logits.shape)} and {tuple(targets.shape)}")
        if tuple(targets.shape) != tuple(logits.shape[:2]):
            raise UserError(f"sequence lengths do not match: the model gives {logits.shape[1]} steps for "
                            f"{logits.shape[0]} sequences, the targets have shape {tuple(targets.shape)}")
        self.shape = logits.shape
        return self.inner.forward(logits.reshape(-1, logits.shape[2]), targets.reshape(-1))

    def backward(self):
        grad = self.inner.backward()
        return grad if self.shape is None else grad.reshape(self.shape)
