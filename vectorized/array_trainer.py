"""The Trainer for data that is not a uint8 image batch: feature vectors, sequences, token ids.

:class:`~vectorized.trainer.Trainer` expects uint8 images, scales them to [0, 1] and normalizes
them. :class:`ArrayTrainer` is the same training loop (checkpoints, resume, early stopping,
callbacks, Ctrl-C) with three differences:

* inputs are used as given: floating arrays become float32, integer arrays (token ids) stay
  integers; uint8 (N, C, H, W) images still go through the image path when a normalizer is set;
* ``task='regression'``: no accuracy, the loss (e.g. MSE) is the metric, and the best checkpoint
  is the lowest validation loss;
* classification counts correct *positions*: logits (N, K) against labels (N,), or per step
  (N, T, K) against (N, T); the accuracy is then the fraction of correct steps.
"""
from __future__ import annotations

import numpy as np

from common.backend import DTYPE, to_device, to_float, to_numpy, xp
from vectorized.trainer import Trainer

TASKS = ("classification", "regression")


def as_model_input(array: np.ndarray) -> np.ndarray:
    """float arrays -> float32; integer arrays (token ids, labels) -> int64; C-contiguous."""
    array = np.asarray(array)
    dtype = np.int64 if np.issubdtype(array.dtype, np.integer) else DTYPE
    return np.ascontiguousarray(array, dtype=dtype)


class ArrayTrainer(Trainer):
    """``Trainer`` for arrays; ``task`` is 'classification' or 'regression'; ``verbose=False``
    silences the per-epoch line."""

    def __init__(self, model, loss, optimizer, *, task="classification", normalizer=None, num_classes=0,
                 verbose=True, **kwargs):
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        super().__init__(model, loss, optimizer, normalizer=normalizer, num_classes=num_classes, **kwargs)
        self.task, self.verbose = task, verbose

    def _is_image_batch(self, x) -> bool:
        return self.normalizer is not None and x.dtype == np.uint8 and x.ndim == 4

    def prepare(self, x, y=None, train=False, keep=slice(None)):
        if self._is_image_batch(x):
            return super().prepare(x, y, train, keep)
        xd = to_device(as_model_input(x[keep]))
        return xd, (None if y is None else to_device(as_model_input(y[keep])))

    def batch_score(self, logits, y_hard):
        """Classification: correct positions in the batch (one per sample, or T per sequence of
        T steps); :meth:`epoch_score` divides by the steps per sample, so accuracy is per step."""
        if self.task == "regression":
            return xp.zeros((), dtype=xp.int64)
        hits = logits.argmax(axis=-1) == y_hard
        self._steps_per_sample = int(hits[0].size) if len(hits) else 1
        return hits.sum()

    def epoch_score(self, correct, seen) -> float:
        return to_float(correct) / seen / getattr(self, "_steps_per_sample", 1)

    def _run_epoch(self, *args, **kwargs):
        row = super()._run_epoch(*args, **kwargs)
        if self.task == "regression":
            row.pop("acc")   # no accuracy for a regression: the loss is the metric
        return row

    def _no_outputs(self):
        """The outputs of an empty input, whatever shape the model gives."""
        return np.zeros((0,), DTYPE)

    def evaluate(self, x, y, batch_size=256):
        """{'loss'} and, for classification, {'acc'} (per position) and 'pred' (argmax ids)."""
        was_training = self.model.training
        self.model.eval()
        loss_sum, preds = 0.0, []
        try:
            for start, xb in self._batches(x, batch_size):
                xd, yd = self.prepare(xb, y[start:start + batch_size])
                out = self.model(xd)
                loss_sum += to_float(self.loss.forward(out, yd)) * len(xb)
                preds.append(to_numpy(out.argmax(axis=-1) if self.task == "classification" else out))
        finally:
            self.model.train(was_training)
        n = max(len(x), 1)
        pred = np.concatenate(preds) if preds else np.zeros(0)
        result = {"loss": loss_sum / n}
        if self.task == "classification":
            result["acc"] = float((pred == np.asarray(y)).mean()) if len(y) else float("nan")
        result["pred"] = pred
        return result

    def _log_epoch(self, epoch, epochs, row):
        if self.verbose:
            parts = [f"epoch {epoch + 1}/{epochs}"]
            parts += [f"{k} {v:.4f}" for k, v in row.items() if k not in ("epoch", "lr", "time")]
            parts += [f"lr {row['lr']:.2e}", f"{row['time']:.1f}s"]
            print(" | ".join(parts), flush=True)
        if self.run_dir is not None:
            self.run_dir.log_metrics(row)

    def _is_best(self, row):
        if self.task == "classification":
            return super()._is_best(row)
        values = self.history.get("val_loss" if "val_loss" in row else "loss", [])
        return bool(values) and values[-1] <= min(values)
