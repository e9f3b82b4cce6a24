"""Regression with the one Trainer: a linear output unit, MSE/MAE/Huber losses, R^2 as the score.

The network ends in ``Linear(hidden, 1)`` with no activation: its output is the prediction
itself, any real number.  The Trainer's loop is unchanged; only three things differ from
classification, and this subclass supplies them:

- targets are floats ``(N,)``, reshaped to ``(N, 1)`` to match the output;
- the score next to the loss is R^2 = 1 - SS_res / SS_tot instead of accuracy;
- ``evaluate`` and ``predict`` return the predicted values, not class indices.

During an epoch the score sums squared errors batch by batch, so the epoch's R^2 is
``1 - mean squared error / variance of the training targets`` (the weights move while it is
summed, as the running accuracy of a classifier does).
"""
from __future__ import annotations

import numpy as np

from common.backend import DTYPE, to_float, to_numpy, xp
from common.metrics import r2_score
from vectorized.trainer import Trainer


class RegressionTrainer(Trainer):
    """``Trainer`` for a model with one linear output and float targets (N,)."""

    score = "r2"

    def __init__(self, model, loss, optimizer, **kwargs):
        kwargs["num_classes"] = 1
        super().__init__(model, loss, optimizer, **kwargs)
        self.target_var = 1.0

    def fit(self, train, val=None, *, epochs, batch_size):
        y = np.asarray(train[1], dtype=np.float64)
        self.target_var = float(y.var()) if len(y) > 1 and y.var() > 0 else 1.0
        return super().fit(train, val, epochs=epochs, batch_size=batch_size)

    def prepare(self, x, y=None, train=False, keep=slice(None)):
        """Features -> device float32 (N, D) input; targets -> (N, 1) float32."""
        xd, targets = super().prepare(x, None if y is None else np.asarray(y, dtype=DTYPE), keep=keep)
        return xd, (None if targets is None else targets.reshape(-1, 1))

    def batch_score(self, outputs, y_hard):
        """The batch's sum of squared errors."""
        diff = outputs.reshape(-1) - y_hard.astype(outputs.dtype)
        return (diff * diff).sum()

    def epoch_score(self, total: float, seen: int) -> float:
        """R^2 of the epoch: 1 - (SSE / seen) / var(y_train)."""
        return 1.0 - (total / seen) / self.target_var

    def predict(self, x, batch_size=256):
        """Predicted values (N,) for host points (N, D, 1, 1)."""
        return self.predict_logits(x, batch_size).reshape(-1)

    def evaluate(self, x, y, batch_size=256):
        """Mean loss and R^2 in eval mode: {'loss', 'r2', 'pred'}."""
        was_training = self.model.training
        self.model.eval()
        loss_sum = xp.zeros((), dtype=DTYPE)
        preds = []
        try:
            for start, xb in self._batches(x, batch_size):
                xd, yd = self.prepare(xb, y[start:start + batch_size])
                out = self.model(xd)
                loss_sum += self.loss.forward(out, yd) * len(xb)
                preds.append(to_numpy(out).reshape(-1))
        finally:
            self.model.train(was_training)
        pred = np.concatenate(preds) if preds else np.zeros(0, DTYPE)
        r2 = r2_score(y, pred) if len(y) > 1 else float("nan")
        return {"loss": to_float(loss_sum) / max(len(x), 1), "r2": r2, "pred": pred}
