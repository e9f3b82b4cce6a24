"""Trainer: mini-batches with per-sample gradient accumulation, validation, early stopping.

For each batch: zero the gradients, run forward -> loss -> backward for every sample (each
backward *adds* into the neurons' gradients), divide the sums by N to get the mean gradient,
then take one optimizer step.

Two safety nets, shared with the other tiers: the divergence guard (:mod:`common.guard`)
checks every batch's loss and, after each epoch, the validation loss and every weight, before
``on_epoch_end`` may save anything; and Ctrl-C (:mod:`common.interrupt`) lets the current
batch finish, records where the epoch stood (:attr:`Trainer.position`) and stops, so the
run can be saved and resumed bit for bit.
"""
from __future__ import annotations

import random
import time

from tqdm.auto import tqdm

from common.errors import UserError
from common.guard import DivergenceGuard
from common.interrupt import DeferredInterrupt
from scalar.losses import LOSSES


def argmax(values) -> int:
    return max(range(len(values)), key=values.__getitem__)


def _label(target) -> int:
    return argmax(target) if isinstance(target, (list, tuple)) else int(target)


def as_rows(x) -> list[list[float]]:
    """A batch as a list of flat lists of Python floats (NumPy arrays are flattened per sample)."""
    if hasattr(x, "reshape"):
        return x.reshape(len(x), -1).tolist()
    return [list(map(float, sample)) for sample in x]


def default_prepare(x_batch, y_batch, training: bool):
    return as_rows(x_batch), [_label(t) for t in y_batch]


class Trainer:
    """Trains a scalar ``Network`` with an optimizer from ``scalar.optimizers``.

    ``prepare(x_batch, y_batch, training) -> (rows, targets)`` turns stored data into lists of
    floats (and may normalize or augment); the default flattens and converts.
    """

    def __init__(self, network, optimizer, loss: str = "cross_entropy", prepare=default_prepare,
                 seed: int = 0, progress: bool = True):
        self.network = network
        self.optimizer = optimizer
        self.loss_name = loss
        self.loss = LOSSES[loss]
        self.prepare = prepare
        self.rng = random.Random(seed)            # shuffling order
        self.progress = progress
        self.history = {"loss": [], "acc": [], "val_loss": [], "val_acc": [], "time": []}
        self.epoch = 0                            # epochs completed
        self.step = 0                             # optimizer steps taken
        self.guard = DivergenceGuard()            # main.py gives it the run's checkpoints
        self.position = None                      # where an interrupted epoch stood (a dict), else None
        self.interrupt = DeferredInterrupt()

    def train_batch(self, rows, targets) -> tuple[float, int]:
        """One optimizer step on the mean gradient of the batch; returns (summed loss, correct)."""
        net = self.network
        net.train()
        self.optimizer.zero_grad()
        total, correct = 0.0, 0
        for x, target in zip(rows, targets):
            logits = net.forward(x)
            loss, grad_logits = self.loss(logits, target)
            net.backward(grad_logits)             # accumulates this sample's gradients
            total += loss
            correct += argmax(logits) == _label(target)
        net.scale_grads(1.0 / len(rows))          # sum -> mean, as PyTorch's mean loss
        self.optimizer.step()
        self.step += 1
        return total, correct

    def _batches(self, n: int, batch_size: int, shuffle: bool):
        order = list(range(n))
        if shuffle:
            self.rng.shuffle(order)
        return [order[i:i + batch_size] for i in range(0, n, batch_size)]

    @staticmethod
    def _take(x, idx):
        return x[idx] if hasattr(x, "shape") else [x[i] for i in idx]

    def evaluate(self, x, y, batch_size: int = 256, desc: str = "eval", keep_logits: bool = False) -> dict:
        """Mean loss, accuracy and the predicted class of every sample, in eval mode (no dropout);
        with ``keep_logits=True`` also the logits of every sample (a list of lists)."""
        net = self.network.eval()
        total, correct, predictions, outputs = 0.0, 0, [], []
        bar = tqdm(total=len(y), desc=desc, unit="sample", leave=False, disable=not self.progress)
        for idx in self._batches(len(y), batch_size, shuffle=False):
            rows, targets = self.prepare(self._take(x, idx), self._take(y, idx), False)
            for row, target in zip(rows, targets):
                logits = net.forward(row)
                outputs.append(logits)
                total += self.loss(logits, target)[0]
                predictions.append(argmax(logits))
                correct += predictions[-1] == _label(target)
            bar.update(len(idx))
        bar.close()
        net.train()
        out = {"loss": total / len(y), "acc": correct / len(y), "predictions": predictions}
        if keep_logits:
            out["logits"] = outputs
        return out

    def fit(self, x, y, epochs: int = 1, batch_size: int = 64, val=None, early_stopping: int = 0,
            min_delta: float = 0.0, early_metric: str = "val_loss", on_epoch_end=None, log=print) -> dict:
        """Train until ``epochs`` epochs are completed (resumed ones count); returns the history.

        ``val=(x_val, y_val)`` is evaluated after every epoch. ``early_stopping=k`` stops after
        k epochs in which ``early_metric`` (val_loss or val_acc) did not improve by ``min_delta``,
        and restores the best weights. ``on_epoch_end(trainer)`` runs after each epoch, once the
        guard has passed it. Ctrl-C raises ``KeyboardInterrupt`` after the current batch, with
        :attr:`position` set when the epoch was under way.
        """
        if early_stopping and (val is None or not len(val[1])):
            raise UserError("early stopping watches the validation set: use --val-split > 0")
        sign = 1.0 if early_metric == "val_loss" else -1.0       # lower loss is better, higher accuracy
        best, best_state, waited = float("inf"), None, 0
        with self.interrupt:
            while self.epoch < epochs:
                total, correct, seen, elapsed = self._train_epoch(x, y, batch_size)
                h = self.history
                result = self.evaluate(*val, desc="validate") if val is not None and len(val[1]) else None
                self.guard.check_epoch(self.epoch, loss=total / seen, val_loss=result and result["loss"],
                                       tensors=self.network.state_dict().values())
                self.epoch += 1
                h["loss"].append(total / seen)
                h["acc"].append(correct / seen)
                h["time"].append(elapsed)
                line = f"epoch {self.epoch}: loss {total / seen:.4f}  acc {correct / seen:.2%}"
                if result is not None:
                    h["val_loss"].append(result["loss"])
                    h["val_acc"].append(result["acc"])
                    line += f"  val_loss {result['loss']:.4f}  val_acc {result['acc']:.2%}"
                line += f"  ({elapsed:.1f} s, {seen / max(elapsed, 1e-9):.0f} samples/s)"
                if log:
                    log(line)
                if on_epoch_end is not None:
                    on_epoch_end(self)
                if early_stopping and h[early_metric]:
                    score = sign * h[early_metric][-1]
                    if score < best - min_delta:
                        best, best_state, waited = score, self.network.state_dict(), 0
                    else:
                        waited += 1
                        if waited >= early_stopping:
                            self.network.load_state_dict(best_state)
                            if log:
                                log(f"early stopping: {early_metric} did not improve for {waited} epochs; "
                                    f"restored the weights with {early_metric} {sign * best:.4f}")
                            break
                if self.interrupt.requested:      # Ctrl-C during the epoch's last batch: it is saved
                    raise KeyboardInterrupt
        return self.history

    def _train_epoch(self, x, y, batch_size: int):
        """One pass over the data (or the rest of an interrupted one); returns (loss sum, correct,
        samples, seconds). On Ctrl-C it sets :attr:`position` and raises KeyboardInterrupt."""
        if self.position is not None:             # resumed mid-epoch: same order, same partial sums
            p, self.position = self.position, None
            order, first = list(p["order"]), int(p["batch"])
            total, correct, seen, elapsed = float(p["loss_sum"]), int(p["correct"]), int(p["seen"]), float(p["time"])
        else:
            order = list(range(len(y)))
            self.rng.shuffle(order)
            first, total, correct, seen, elapsed = 0, 0.0, 0, 0, 0.0
        batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        start = time.perf_counter() - elapsed
        with tqdm(total=len(y), initial=seen, desc=f"epoch {self.epoch + 1}", unit="sample",
                  disable=not self.progress) as bar:  # closed before any error message
            for b in range(first, len(batches)):
                idx = batches[b]
                rows, targets = self.prepare(self._take(x, idx), self._take(y, idx), True)
                batch_loss, batch_correct = self.train_batch(rows, targets)
                self.guard.check_step(batch_loss / len(idx), self.epoch, self.step)
                total, correct, seen = total + batch_loss, correct + batch_correct, seen + len(idx)
                bar.update(len(idx))
                bar.set_postfix(loss=f"{total / seen:.4f}", acc=f"{correct / seen:.3f}")
                if self.interrupt.requested and b + 1 < len(batches):
                    self.position = {"order": order, "batch": b + 1, "loss_sum": total, "correct": correct,
                                     "seen": seen, "time": time.perf_counter() - start}
                    raise KeyboardInterrupt
        return total, correct, seen, time.perf_counter() - start
