"""The Trainer shared by the vectorized and convolutional tiers.

One loop for every model: host uint8 batch -> augment (host) -> normalize -> device ->
forward -> loss -> backward -> clip -> optimizer step -> schedule. It keeps a history,
saves a checkpoint every epoch (and the best one), resumes exactly, stops early, stops a
diverged run before it saves anything of it (:mod:`common.guard`), and turns Ctrl-C into a
saved checkpoint (:mod:`common.interrupt`).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from common import dispatch
from common.backend import DTYPE, to_device, to_float, to_numpy, xp
from common.checkpoint import Checkpoint, check_compatible, load_checkpoint, save_checkpoint
from common.cli import TrainingInterrupted
from common.errors import UserError
from common.guard import DivergenceGuard, TrainingDiverged, quiet_float_warnings, refuse_non_finite
from common.interrupt import DeferredInterrupt
from common.seed import capture_rng_state, restore_rng_state
from vectorized.optim import clip_grad_norm


__all__ = ["EarlyStopping", "Trainer", "TrainingDiverged"]


@dataclass
class EarlyStopping:
    """Stop when ``metric`` has not improved by ``min_delta`` for ``patience`` epochs.

    The best weights are kept on the host and put back into the model when training ends.
    """

    metric: str = "val_loss"
    patience: int = 5
    min_delta: float = 1e-4
    best: float | None = None
    best_epoch: int = -1
    bad_epochs: int = 0
    best_state: dict | None = field(default=None, repr=False)

    @property
    def mode(self) -> str:
        return "min" if self.metric.endswith("loss") else "max"

    def update(self, value: float, epoch: int, model) -> bool:
        """Record one epoch's value; returns True when training should stop."""
        improved = (self.best is None
                    or (self.mode == "min" and value < self.best - self.min_delta)
                    or (self.mode == "max" and value > self.best + self.min_delta))
        if improved:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            self.best_state = model.state_dict()
            return False
        self.bad_epochs += 1
        return self.bad_epochs >= self.patience

    def state_dict(self) -> dict:
        return {"metric": self.metric, "patience": self.patience, "min_delta": self.min_delta,
                "best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict) -> None:
        for key in ("best", "best_epoch", "bad_epochs"):
            setattr(self, key, state[key])


class Trainer:
    """Train, evaluate and checkpoint a tier-2/3 model.

    Args:
        model: a ``Module`` taking ``(N, C, H, W)`` float input (or ``(N, D)`` with ``flatten_input``).
        loss: e.g. ``CrossEntropyLoss()``; ``forward(logits, targets)`` then ``backward()``.
        optimizer: an optimizer from ``vectorized.optim`` (``Lookahead`` included).
        normalizer: ``common.data.Normalizer`` fitted on the training split.
        num_classes: number of classes.
        schedule: a schedule from ``vectorized.schedules`` (stepped per epoch or per step).
        grad_clip: global-norm clip on the mean gradient, or None.
        augmenter: ``common.augment.Augmenter`` used on training batches only, or None.
        early_stopping: an :class:`EarlyStopping`, or None.
        run_dir: a ``common.cli.RunDir`` (metrics.csv, last.h5, best.h5), or None.
        config: the run's config, stored in every checkpoint (tier, architecture, dataset...).
        callbacks: objects with optional ``on_epoch_end(trainer, row)`` and ``on_step_end(trainer, step)``.
        log_every: steps between progress-bar updates (the divergence guard checks every step).
        parallel: a :class:`vectorized.data_parallel.DataParallel` when this process is one rank
            of a data-parallel run (each rank trains on its shard of every batch), else None.
    """

    def __init__(self, model, loss, optimizer, *, normalizer, num_classes, schedule=None, grad_clip=None,
                 augmenter=None, early_stopping=None, run_dir=None, config=None, callbacks=(),
                 flatten_input=False, log_every=20, progress=True, seed=0, parallel=None):
        self.model, self.loss, self.optimizer = model, loss, optimizer
        self.normalizer, self.num_classes = normalizer, num_classes
        self.schedule, self.grad_clip, self.augmenter = schedule, grad_clip, augmenter
        self.early_stopping, self.run_dir = early_stopping, run_dir
        self.config = dict(config or {})
        self.callbacks = list(callbacks)
        self.flatten_input, self.log_every, self.progress = flatten_input, log_every, progress
        self.data_rng = np.random.default_rng(seed)
        self.history: dict[str, list[float]] = {}
        self.epoch = 0          # completed epochs
        self.step = 0           # optimizer steps taken
        self._resume_position = None  # (permutation, next batch, partial sums) when resumed mid-epoch
        self._interrupt = DeferredInterrupt()
        self._batch_index = 0
        self.parallel, self.seed = parallel, seed
        self._resumed_from = None
        self.guard = DivergenceGuard(candidates=self._fallback_checkpoints)

    #: the metric next to the loss in the history and the log; RegressionTrainer reports "r2"
    score = "acc"
    #: epochs between the per-epoch checkpoints (a toy task runs hundreds of sub-second epochs)
    checkpoint_every = 1

    def batch_score(self, outputs, y_hard):
        """What one training batch adds to the epoch's score sum: its count of correct predictions."""
        return (outputs.argmax(axis=1) == y_hard).sum()

    def epoch_score(self, total: float, seen: int) -> float:
        """The epoch's score from the summed batch scores: accuracy = correct / seen."""
        return total / seen

    def _fallback_checkpoints(self):
        """Checkpoints a diverged run can go back to: last, best, and the one it resumed from."""
        paths = [self._resumed_from] if self._resumed_from is not None else []
        if self.run_dir is not None:
            paths += [self.run_dir.checkpoint_path("last"), self.run_dir.checkpoint_path("best")]
        return paths

    # ------------------------------------------------------------------ data
    def prepare(self, x_uint8, y=None, train=False, keep=slice(None)):
        """Host uint8 (N, C, H, W) images (or float32 toy points) -> device float32 input and targets.

        ``keep``: the rows to return, chosen after augmentation (a data-parallel rank augments
        the whole global batch, drawing the random numbers one process would, and keeps its shard).
        """
        x = x_uint8.astype(DTYPE) / 255.0 if x_uint8.dtype == np.uint8 else x_uint8.astype(DTYPE)  # toy points
        targets = y
        if train and self.augmenter is not None:
            x, targets = self.augmenter(x, y, self.num_classes)
        x, targets = x[keep], (None if targets is None else targets[keep])
        x = self.normalizer(x)
        if self.flatten_input:
            x = x.reshape(len(x), -1)
        x = to_device(np.ascontiguousarray(x, dtype=DTYPE))
        if targets is not None:
            targets = to_device(targets)
        return x, targets

    # ------------------------------------------------------------------ training
    def train_step(self, x, targets, y_hard):
        """One optimizer step on a prepared batch; returns (loss sum, correct count) on the device."""
        self.model.train()
        self.model.zero_grad()
        logits = self.model(x)
        loss = self.loss.forward(logits, targets)
        dispatch.training_backward(self.model, self.loss.backward())  # every parameter's gradient
        if self.parallel is not None:  # the mean gradient of the global batch, on every rank
            self.parallel.average_gradients(self.model.parameters(), self._interrupt.requested)
        if self.grad_clip:
            clip_grad_norm(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        self.step += 1
        if self.schedule is not None and getattr(self.schedule, "per", "epoch") == "step":
            self.schedule.step()
        correct = self.batch_score(logits, y_hard)
        return loss * len(x), correct

    def fit(self, train, val=None, *, epochs, batch_size):
        """Train until ``epochs`` epochs are completed (counting resumed ones). Returns the history."""
        x_train, y_train = train
        if len(x_train) == 0:
            raise UserError("the training set is empty; lower --val-split or raise --limit")
        self._prepare_engine(x_train, batch_size)
        if self.parallel is not None:
            self.parallel.broadcast_model(self.model)
            self.parallel.reseed_device_stream(self.seed, self.step)
        try:
            with self._interrupt, quiet_float_warnings():
                for epoch in range(self.epoch, epochs):
                    if self._train_one_epoch(epoch, epochs, x_train, y_train, val, batch_size):
                        break
        except KeyboardInterrupt:
            path = self._save_interrupted()
            raise TrainingInterrupted(path) from None
        if self.early_stopping is not None and self.early_stopping.best_state is not None:
            self.model.load_state_dict(self.early_stopping.best_state)
            print(f"[early stopping] restored the best weights (epoch {self.early_stopping.best_epoch + 1}, "
                  f"{self.early_stopping.metric}={self.early_stopping.best:.4f})")
        return self.history

    def _prepare_engine(self, x_train, batch_size):
        """Tell the engine one batch's forward FLOPs (the fast engine picks how to share the cores)."""
        shape = self.prepare(x_train[:1])[0].shape[1:]
        dispatch.prepare_training(self.model, self.model.forward_flops(shape) * min(batch_size, len(x_train)))

    def _train_one_epoch(self, epoch, epochs, x_train, y_train, val, batch_size):
        """Train, validate, schedule, log and checkpoint one epoch. Returns True to stop early."""
        steps_per_epoch = math.ceil(len(x_train) / batch_size)
        row = self._run_epoch(epoch, epochs, x_train, y_train, batch_size, steps_per_epoch)
        if val is not None and len(val[0]):
            if self.parallel is None:
                metrics = self.evaluate(*val, batch_size=max(batch_size, 256))
            else:  # each rank a slice of the validation set
                metrics = self.parallel.evaluate(self, *val, batch_size=max(batch_size, 256))
            row.update({f"val_{k}": v for k, v in metrics.items() if k not in ("pred", "logits")})
        # before anything of this epoch is kept: a diverged epoch writes no checkpoint and no row
        self.guard.check_epoch(epoch, loss=row["loss"], val_loss=row.get("val_loss"),
                               tensors=self.model.state_dict().values())
        row["lr"] = float(self.optimizer.lr)
        if self.schedule is not None and getattr(self.schedule, "per", "epoch") == "epoch":
            self.schedule.step(row.get("val_loss", row["loss"]))  # only ReduceLROnPlateau reads it
        for key, value in row.items():
            self.history.setdefault(key, []).append(value)
        self.epoch = epoch + 1
        self._batch_index = 0
        stop = False
        if self.early_stopping is not None:
            metric = self.early_stopping.metric
            if metric not in row:
                raise UserError(f"early stopping watches {metric}, which needs --val-split > 0")
            stop = self.early_stopping.update(row[metric], epoch, self.model)
        self._log_epoch(epoch, epochs, row)
        self._save_epoch_checkpoints(row)
        if self.run_dir is not None:  # after the checkpoint landed, so the CSV never runs ahead of it
            self.run_dir.log_metrics(row)
        for cb in self.callbacks:
            if hasattr(cb, "on_epoch_end"):
                cb.on_epoch_end(self, row)
        if stop:
            print(f"[early stopping] no {self.early_stopping.metric} improvement for "
                  f"{self.early_stopping.patience} epochs; best epoch {self.early_stopping.best_epoch + 1}")
        return stop

    def _run_epoch(self, epoch, epochs, x_train, y_train, batch_size, steps_per_epoch):
        n = len(x_train)
        loss_sum = xp.zeros((), dtype=DTYPE)
        correct = xp.zeros((), dtype=xp.float64)  # a count, or a sum of squared errors (regression)
        seen, elapsed = 0, 0.0
        if self._resume_position is not None:  # resumed mid-epoch: same order, same partial sums
            perm, first_batch, partial = self._resume_position
            self._resume_position = None
            loss_sum += float(partial["loss_sum"])
            correct += int(partial["correct"])
            seen, elapsed = int(partial["seen"]), float(partial["time"])
        else:
            perm, first_batch = self.data_rng.permutation(n), 0
        self._epoch_perm = perm
        self._partial = (loss_sum, correct)
        t0 = time.perf_counter() - elapsed
        bar = tqdm(range(first_batch, steps_per_epoch), desc=f"epoch {epoch + 1}/{epochs}", unit="batch",
                   disable=not self.progress, leave=False, dynamic_ncols=True)
        with bar:  # closed before any error message
            for b in bar:
                self._batch_index = b
                idx = perm[b * batch_size:(b + 1) * batch_size]
                keep = slice(None) if self.parallel is None else self.parallel.shard(len(idx))
                x, targets = self.prepare(x_train[idx], y_train[idx], train=True, keep=keep)
                y_hard = to_device(y_train[idx][keep])
                batch_loss, batch_correct = self.train_step(x, targets, y_hard)
                self.guard.check_step(to_float(batch_loss) / max(len(x), 1), epoch, self.step)
                loss_sum += batch_loss
                correct += batch_correct
                seen += len(x)
                self._batch_index, self._seen, self._epoch_t0 = b + 1, seen, t0
                for cb in self.callbacks:
                    if hasattr(cb, "on_step_end"):
                        cb.on_step_end(self, self.step)
                stop = self._interrupt.requested if self.parallel is None else self.parallel.stop_requested
                if stop:  # with ranks: stop after the step where any rank saw Ctrl-C, all together
                    raise KeyboardInterrupt
                if (b + 1) % self.log_every == 0 or b + 1 == steps_per_epoch:
                    mean_loss = to_float(loss_sum) / seen
                    score = self.epoch_score(to_float(correct), seen)
                    bar.set_postfix(loss=f"{mean_loss:.4f}", **{self.score: f"{score:.3f}"},
                                    lr=f"{float(self.optimizer.lr):.2e}")
        if self.parallel is not None:
            loss_sum, correct, seen = self.parallel.sum_metrics(loss_sum, correct, seen)
        seen = max(seen, 1)
        return {"epoch": epoch + 1, "loss": to_float(loss_sum) / seen,
                self.score: self.epoch_score(to_float(correct), seen),
                "time": time.perf_counter() - t0}

    # ------------------------------------------------------------------ evaluation
    def _batches(self, x, batch_size):
        for start in range(0, len(x), batch_size):
            yield start, x[start:start + batch_size]

    def predict_logits(self, x, batch_size=256):
        """Eval-mode logits for host uint8 images, as a host float32 array (N, K)."""
        was_training = self.model.training
        self.model.eval()
        out = []
        try:
            for _, xb in self._batches(x, batch_size):
                out.append(to_numpy(self.model(self.prepare(xb)[0])))
        finally:
            self.model.train(was_training)
        return np.concatenate(out) if out else self._no_outputs()

    def _no_outputs(self):
        """The outputs of an empty input: (0, K) logits."""
        return np.zeros((0, self.num_classes), DTYPE)

    def predict_proba(self, x, batch_size=256):
        logits = self.predict_logits(x, batch_size)
        z = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, x, batch_size=256):
        return self.predict_logits(x, batch_size).argmax(axis=1)

    def evaluate(self, x, y, batch_size=256, keep_logits=False):
        """Mean loss and accuracy in eval mode: {'loss', 'acc', 'pred'}, and with ``keep_logits=True``
        the host logits (N, K) under 'logits'."""
        was_training = self.model.training
        self.model.eval()
        loss_sum = xp.zeros((), dtype=DTYPE)
        outputs = []
        try:
            for start, xb in self._batches(x, batch_size):
                yb = y[start:start + batch_size]
                xd, yd = self.prepare(xb, yb)
                logits = self.model(xd)
                loss_sum += self.loss.forward(logits, yd) * len(xb)
                outputs.append(to_numpy(logits))
        finally:
            self.model.train(was_training)
        scores = np.concatenate(outputs) if outputs else np.zeros((0, self.num_classes), DTYPE)
        pred = scores.argmax(axis=1)
        n = max(len(x), 1)
        out = {"loss": to_float(loss_sum) / n, "acc": float((pred == y).mean()) if len(y) else float("nan"),
               "pred": pred}
        if keep_logits:
            out["logits"] = scores
        return out

    # ------------------------------------------------------------------ logging
    def _log_epoch(self, epoch, epochs, row):
        parts = [f"epoch {epoch + 1}/{epochs}", f"loss {row['loss']:.4f}", f"{self.score} {row[self.score]:.4f}"]
        if "val_loss" in row:
            parts += [f"val_loss {row['val_loss']:.4f}", f"val_{self.score} {row['val_' + self.score]:.4f}"]
        parts += [f"lr {row['lr']:.2e}", f"{row['time']:.1f}s"]
        print(" | ".join(parts), flush=True)

    # ------------------------------------------------------------------ checkpoints
    def checkpoint(self, *, mid_epoch=False) -> Checkpoint:
        """Everything needed to continue as if never stopped."""
        rng = capture_rng_state()
        rng["data"] = self.data_rng.bit_generator.state
        if self.augmenter is not None:
            rng["augment"] = self.augmenter.state_dict()
        extra = {}
        if self.early_stopping is not None:
            extra["early_stopping"] = self.early_stopping.state_dict()
        if mid_epoch:
            extra["epoch_perm"] = np.asarray(self._epoch_perm)
            extra["batch_index"] = int(self._batch_index)
            loss_sum, correct = self._partial
            extra["partial"] = {"loss_sum": to_float(loss_sum), "correct": int(to_float(correct)),
                                "seen": int(self._seen), "time": time.perf_counter() - self._epoch_t0}
        return Checkpoint(
            model_state=self.model.state_dict(),
            optimizer_state=self.optimizer.state_dict(),
            scheduler_state=self.schedule.state_dict() if self.schedule is not None else {},
            epoch=self.epoch, step=self.step, rng_state=rng,
            history={k: list(v) for k, v in self.history.items()},
            config=self.config, extra=extra)

    def save(self, path, *, mid_epoch=False):
        return save_checkpoint(path, self.checkpoint(mid_epoch=mid_epoch))

    def _save_epoch_checkpoints(self, row):
        if self.run_dir is None or row["epoch"] % self.checkpoint_every:
            return
        self.save(self.run_dir.checkpoint_path("last"))
        es = self.early_stopping
        is_best = (es.best_epoch == row["epoch"] - 1) if es is not None else self._is_best(row)
        if is_best:
            self.save(self.run_dir.checkpoint_path("best"))

    def _is_best(self, row):
        key = "val_" + self.score if "val_" + self.score in row else self.score
        values = self.history.get(key, [])
        return bool(values) and values[-1] >= max(values)

    def _save_interrupted(self):
        """Save where the run stands after Ctrl-C and return the path. After a second Ctrl-C
        (possibly in the middle of a step) nothing new is saved: the previous checkpoint or None."""
        in_epoch = 0 < getattr(self, "_batch_index", 0) and getattr(self, "_epoch_perm", None) is not None
        if self.parallel is not None and not self.parallel.prepare_interrupted_save(self, in_epoch):
            return None  # rank 0 writes the checkpoint
        if self.run_dir is not None:
            path = self.run_dir.checkpoint_path("last")
        else:
            path = "interrupted.h5"
        if self._interrupt.forced:
            return path if self.run_dir is not None and path.exists() else None
        self.guard.check_tensors(self.model.state_dict().values(), self.epoch)
        return self.save(path, mid_epoch=in_epoch)

    def resume(self, path):
        """Load a checkpoint written by :meth:`save` and continue exactly where it stopped."""
        ckpt = load_checkpoint(path)
        check_compatible(ckpt, model_shapes=self.model.state_shapes(),
                         config={k: self.config[k] for k in ("tier", "architecture", "num_classes", "input_shape")
                                 if k in self.config})
        refuse_non_finite(ckpt)
        self._resumed_from = ckpt.path
        self.model.load_state_dict(ckpt.model_state)
        self.optimizer.load_state_dict(ckpt.optimizer_state)
        if self.schedule is not None and ckpt.scheduler_state:
            self.schedule.load_state_dict(ckpt.scheduler_state)
        self.epoch, self.step = ckpt.epoch, ckpt.step
        self.history = {k: list(v) for k, v in ckpt.history.items()}
        rng = dict(ckpt.rng_state)
        self.data_rng.bit_generator.state = rng.pop("data")
        if "augment" in rng and self.augmenter is not None:
            self.augmenter.load_state_dict(rng.pop("augment"))
        rng.pop("augment", None)
        restore_rng_state(rng)
        if self.early_stopping is not None and "early_stopping" in ckpt.extra:
            self.early_stopping.load_state_dict(ckpt.extra["early_stopping"])
        if "batch_index" in ckpt.extra:
            self._resume_position = (np.asarray(ckpt.extra["epoch_perm"]), int(ckpt.extra["batch_index"]),
                                     ckpt.extra["partial"])
        if self.run_dir is not None:  # drop rows of epochs the checkpoint does not hold
            self.run_dir.rewrite_metrics(self.history)
        return ckpt

