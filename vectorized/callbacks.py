"""Keras-style callbacks for :class:`vectorized.model_api.Model`.

The Trainer calls ``on_epoch_end(trainer, row)`` after every epoch (``row``: the epoch's
metrics, e.g. {'epoch': 3, 'loss': ..., 'acc': ..., 'val_loss': ..., 'lr': ...}) and
``on_step_end(trainer, step)`` after every optimizer step; ``Model.fit`` adds
``on_train_begin(trainer)`` and ``on_train_end(trainer)``. Metric names may be given the
Keras way (``accuracy``, ``val_accuracy``) or NNOTT's (``acc``, ``val_acc``).
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

from tqdm.auto import tqdm

from common.errors import UserError
from vectorized.trainer import EarlyStopping as _EarlyStoppingRule

_KERAS_NAMES = {"accuracy": "acc", "val_accuracy": "val_acc"}


def metric_key(name: str) -> str:
    """'val_accuracy' -> 'val_acc'; other names unchanged."""
    return _KERAS_NAMES.get(name, name)


def _lookup(row: dict, monitor: str, who: str) -> float:
    key = metric_key(monitor)
    if key not in row:
        raise UserError(f"{who} watches {monitor!r}, which this run does not report (it has: "
                        f"{', '.join(k for k in row if k not in ('epoch', 'time'))}); "
                        "val_ metrics need validation_data or validation_split")
    return row[key]


class Callback:
    """Base class: every hook does nothing. ``self.model`` is the Model being fitted."""

    model = None

    def on_train_begin(self, trainer): ...
    def on_epoch_end(self, trainer, row): ...
    def on_step_end(self, trainer, step): ...
    def on_train_end(self, trainer): ...


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs; the best
    weights are put back at the end. (It is the Trainer's own early-stopping rule.)"""

    def __init__(self, monitor: str = "val_loss", patience: int = 5, min_delta: float = 1e-4):
        self.monitor = monitor
        self.rule = _EarlyStoppingRule(metric=metric_key(monitor), patience=int(patience), min_delta=float(min_delta))


class ModelCheckpoint(Callback):
    """Save a full, resumable checkpoint (HDF5) after each epoch, or only when ``monitor`` improves.

    ``filepath`` may hold fields of the epoch's row: ``"ckpt/epoch{epoch:02d}-{val_loss:.3f}.h5"``.
    """

    def __init__(self, filepath, monitor: str = "val_loss", save_best_only: bool = False):
        self.filepath, self.monitor, self.save_best_only = str(filepath), monitor, bool(save_best_only)
        self.best = None
        self.saved: list[Path] = []

    def on_epoch_end(self, trainer, row):
        if self.save_best_only:
            value = _lookup(row, self.monitor, "ModelCheckpoint")
            if self.best is None:
                better = True
            elif self.monitor.endswith("loss"):
                better = value < self.best
            else:
                better = value > self.best
            if not better:
                return
            self.best = value
        fields = dict(row)
        fields.update({k: row[v] for k, v in _KERAS_NAMES.items() if v in row})
        try:
            path = Path(self.filepath.format(**fields))
        except (KeyError, ValueError) as err:
            raise UserError(f"ModelCheckpoint: cannot fill {self.filepath!r} from the epoch's metrics "
                            f"({err})") from None
        path.parent.mkdir(parents=True, exist_ok=True)
        self.saved.append(trainer.save(path))


class LearningRateScheduler(Callback):
    """Set the learning rate of each epoch to ``schedule(epoch, lr)`` (epoch counted from 0)."""

    def __init__(self, schedule):
        self.schedule = schedule

    def _apply(self, trainer, epoch):
        lr = float(self.schedule(epoch, float(trainer.optimizer.lr)))
        if not math.isfinite(lr) or lr <= 0:
            raise UserError(f"LearningRateScheduler gave lr={lr} for epoch {epoch}; it must be a positive number")
        trainer.optimizer.lr = lr

    def on_train_begin(self, trainer):
        self._apply(trainer, trainer.epoch)

    def on_epoch_end(self, trainer, row):
        self._apply(trainer, trainer.epoch)  # trainer.epoch is now the next epoch's index


class CSVLogger(Callback):
    """Append one row per epoch to a CSV file (header first; ``append=False`` starts it afresh)."""

    def __init__(self, filename, separator: str = ",", append: bool = False):
        self.path, self.separator, self.append = Path(filename), separator, bool(append)
        self.fields = None

    def on_train_begin(self, trainer):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.append and self.path.exists():
            self.path.unlink()

    def on_epoch_end(self, trainer, row):
        new = not self.path.exists() or self.path.stat().st_size == 0
        if self.fields is None:
            self.fields = list(row)
        with self.path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.fields, delimiter=self.separator, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)


class ProgressBar(Callback):
    """One tqdm bar over the epochs, its postfix the latest metrics."""

    def __init__(self, **tqdm_options):
        self.options = tqdm_options
        self.bar = None

    def on_train_begin(self, trainer):
        self.bar = tqdm(total=self.model.target_epochs if self.model else None, initial=trainer.epoch,
                        unit="epoch", desc="fit", **self.options)

    def on_epoch_end(self, trainer, row):
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4f}" for k, v in row.items() if k not in ("epoch", "time", "lr")},
                                 refresh=False)
            self.bar.update(1)

    def on_train_end(self, trainer):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
