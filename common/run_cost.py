"""What a whole run will cost, said before it is spent: epochs x batches, then a time estimate.

A newcomer who types ``python convolutional/main.py resnet18 --gpu`` on a machine without a GPU
should learn in the first seconds that the run takes most of an hour, and how to shorten it.
:func:`cost_line` states the work (epochs x batches); :class:`CostEstimate`, a Trainer callback,
times the first few training batches and prints one line with the projected total.
"""
from __future__ import annotations

import time

from tqdm.auto import tqdm


def format_duration(seconds: float) -> str:
    """12 -> '12 s', 150 -> '2.5 min', 7200 -> '2.0 h'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def cost_line(epochs: int, done_epochs: int, steps_per_epoch: int, batch_size: int, n_train: int) -> str:
    """'[nnott] cost: 3 epochs x 844 batches of 64 = 2,532 training steps; ...'."""
    left = max(epochs - done_epochs, 0)
    total = left * steps_per_epoch
    resumed = f" (epochs {done_epochs + 1}-{epochs})" if done_epochs else ""
    return (f"[nnott] cost: {left} epoch{'s' if left != 1 else ''}{resumed} x {steps_per_epoch:,} batches of "
            f"{batch_size} ({n_train:,} training images) = {total:,} training steps; "
            "shorten with --limit N (N training images) or --epochs N")


class CostEstimate:
    """Trainer callback: after ``measure`` timed batches (the first one, which warms caches up, is not
    counted) print the projected training time of the run, once, and how to cut it.

    Per step: t = (time of batches 2 .. measure+1) / measure; total = t x remaining steps.
    Validation and test passes are not included.
    """

    def __init__(self, total_steps: int, steps_per_epoch: int, epochs_left: int, n_images: int,
                 measure: int = 5, min_total_s: float = 60.0, print_fn=None):
        self.total_steps, self.steps_per_epoch = int(total_steps), int(steps_per_epoch)
        self.epochs_left, self.n_images = int(epochs_left), int(n_images)   # n_images: what --limit counts
        self.measure, self.min_total_s = int(measure), float(min_total_s)
        self.print_fn = print_fn or tqdm.write
        self.seen, self.t0, self.done = 0, None, False
        self.per_step = None

    def on_step_end(self, trainer, step):
        if self.done:
            return
        self.seen += 1
        if self.seen == 1:                       # the first batch pays for warm-up: not counted
            self.t0 = time.perf_counter()
            return
        if self.seen < self.measure + 1 and self.seen < self.total_steps:
            return
        self.done = True
        self.per_step = (time.perf_counter() - self.t0) / (self.seen - 1)
        self.print_fn(self.message(self.per_step))

    def message(self, per_step: float) -> str:
        total = per_step * self.total_steps
        measured = f" (batches 2-{self.seen})" if self.seen > 1 else ""
        text = (f"[nnott] estimate: {per_step:.3g} s per batch{measured}, so about "
                f"{format_duration(total)} of training for the {self.total_steps:,} steps")
        if total >= self.min_total_s:
            hints = []
            if self.epochs_left > 1:
                hints.append(f"--epochs 1: about {format_duration(per_step * self.steps_per_epoch)}")
            target = max(int(self.n_images * self.min_total_s * 5 / total), 10)   # about five minutes
            if target < self.n_images:
                hints.append(f"--limit {target}: about {format_duration(self.min_total_s * 5)}")
            if hints:
                text += "; shorter: " + ", ".join(hints)
        return text
