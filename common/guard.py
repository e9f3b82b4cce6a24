"""The divergence guard shared by the three tiers: stop a run whose numbers stopped being numbers.

A learning rate that is too large makes the weights grow until a product overflows to ``inf``
and the next sum turns into ``nan``; from then on every loss is ``nan``. The guard looks at
three things, each where it is cheapest to catch:

1. after every optimizer step: the batch's mean loss;
2. after every epoch: the validation loss (the last step of an epoch can blow up the weights
   after its own loss was computed, and only the next forward pass shows it);
3. after every epoch: every tensor of the model (parameters and buffers such as BatchNorm's
   running statistics) is finite.

A trainer asks the guard *before* it writes ``last.h5`` or ``best.h5``, so a diverged epoch
never replaces a good checkpoint. The error names the newest checkpoint that really holds
finite weights and a finite loss, so the message can be trusted::

    guard = DivergenceGuard(candidates=lambda: [run / "last.h5", run / "best.h5"])
    guard.check_step(loss, epoch)                                    # inside the batch loop
    guard.check_epoch(epoch, loss=..., val_loss=..., tensors=model.state_dict().values())
"""
from __future__ import annotations

import math
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from common.errors import CheckpointError, UserError

ADVICE = "try a lower --lr (or --grad-clip 5 where the tier has it)"


class TrainingDiverged(UserError):
    """The loss or the weights became NaN or Inf; nothing diverged was saved."""


@contextmanager
def quiet_float_warnings():
    """Hide NumPy's 'overflow encountered' warnings while a trainer runs: the guard says the same
    thing in one line, with what to do, instead of a screenful of them."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"(overflow|invalid value|divide by zero) encountered",
                                RuntimeWarning)
        yield


def tensors_finite(tensors) -> bool:
    """True when every value of every tensor is finite. Tensors: arrays or (nested) lists of floats."""
    for t in tensors:
        a = np.asarray(t, dtype=np.float64) if isinstance(t, (list, tuple)) else np.asarray(t)
        if a.dtype.kind in "fc" and not np.isfinite(a).all():
            return False
    return True


def checkpoint_is_finite(ckpt) -> bool:
    """A checkpoint is good when its weights are finite and so is the last loss it recorded."""
    if not tensors_finite(ckpt.model_state.values()):
        return False
    for key in ("loss", "val_loss"):
        values = ckpt.history.get(key) or []
        if values and not math.isfinite(float(values[-1])):
            return False
    return True


def refuse_non_finite(ckpt) -> None:
    """Refuse to load a checkpoint whose weights are not finite (CheckpointError, one line)."""
    if not tensors_finite(ckpt.model_state.values()):
        raise CheckpointError(f"{ckpt.path} holds NaN or infinite weights (the run diverged); "
                              "load an earlier checkpoint or train again with a lower --lr")


def newest_finite_checkpoint(paths) -> Path | None:
    """The checkpoint among ``paths`` with the most training (epoch, step) that loads and is finite."""
    from common.checkpoint import load_checkpoint

    best, best_key = None, None
    for path in paths:
        path = Path(path)
        if not path.is_file():
            continue
        try:
            ckpt = load_checkpoint(path)
        except CheckpointError:
            continue
        if not checkpoint_is_finite(ckpt):
            continue
        key = (ckpt.epoch, ckpt.step)
        if best_key is None or key > best_key:
            best, best_key = path, key
    return best


class DivergenceGuard:
    """Raises :class:`TrainingDiverged` as soon as a loss or a weight is not finite.

    ``candidates()`` returns the checkpoint paths the run may fall back to (last, best, the one
    it resumed from); the message names the newest finite one.
    """

    def __init__(self, candidates=lambda: (), advice: str = ADVICE):
        self.candidates = candidates
        self.advice = advice

    def check_step(self, loss: float, epoch: int, step: int | None = None) -> None:
        """After an optimizer step: ``loss`` is that batch's mean loss (a Python float)."""
        if not math.isfinite(loss):
            where = f"epoch {epoch + 1}" + (f", step {step}" if step is not None else "")
            self.diverged(f"the loss became {loss} in {where}")

    def check_epoch(self, epoch: int, *, loss: float, val_loss: float | None = None, tensors=()) -> None:
        """After an epoch, before any checkpoint of it is written."""
        if not math.isfinite(loss):
            self.diverged(f"the loss became {loss} in epoch {epoch + 1}")
        if val_loss is not None and not math.isfinite(val_loss):
            self.diverged(f"the validation loss became {val_loss} in epoch {epoch + 1}")
        if not tensors_finite(tensors):
            self.diverged(f"the weights became NaN or infinite in epoch {epoch + 1}")

    def check_tensors(self, tensors, epoch: int) -> None:
        """Before saving mid-epoch (Ctrl-C): the last step may have blown up the weights."""
        if not tensors_finite(tensors):
            self.diverged(f"the weights became NaN or infinite in epoch {epoch + 1}")

    def diverged(self, what: str) -> None:
        good = newest_finite_checkpoint(self.candidates())
        keep = (f"this epoch was not saved; the last good checkpoint is {good}" if good is not None
                else "nothing was saved (no earlier checkpoint)")
        raise TrainingDiverged(f"{what}; {keep}; {self.advice}")
