"""Mini-batches: a fresh shuffle every epoch, optional drop-last, optional background prefetch.

With ``prefetch=k`` a worker thread prepares up to ``k`` batches ahead (slicing, and the
optional ``transform`` such as augmentation + normalisation) while the main thread computes.
NumPy releases the GIL in its heavy loops, so the two really overlap.  The batches are the
same with and without prefetch: the permutation is drawn before the worker starts.
"""
from __future__ import annotations

import math
import queue
import threading
from typing import Callable, Iterator

import numpy as np


def num_batches(n: int, batch_size: int, drop_last: bool = False) -> int:
    """How many batches one epoch over ``n`` samples yields."""
    return n // batch_size if drop_last else math.ceil(n / batch_size)


def _slices(x, y, order, batch_size, drop_last, transform):
    """Batches in ``order`` (an index array), or in storage order as views when ``order`` is None."""
    for b in range(num_batches(len(x), batch_size, drop_last)):
        part = slice(b * batch_size, (b + 1) * batch_size)
        idx = part if order is None else order[part]
        xb, yb = x[idx], y[idx]
        yield transform(xb, yb) if transform is not None else (xb, yb)


_DONE = object()


def _prefetched(source: Iterator, depth: int) -> Iterator:
    """Run ``source`` in a daemon thread, ``depth`` items ahead; re-raise its errors here."""
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work():
        try:
            for item in source:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            put(exc)

    worker = threading.Thread(target=work, name="batch-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = items.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:  # also runs when the consumer stops early (break, exception, Ctrl-C)
        stop.set()
        worker.join(timeout=5.0)


def iterate_batches(x: np.ndarray, y: np.ndarray, batch_size: int, *, shuffle: bool = True,
                    rng: np.random.Generator | None = None, drop_last: bool = False,
                    prefetch: int = 0, transform: Callable | None = None) -> Iterator:
    """Yield ``(xb, yb)`` slices of one epoch (or ``transform(xb, yb)`` when given).

    x: (N, ...), y: (N,).  ``rng`` draws the permutation (pass one for a reproducible order);
    ``drop_last`` skips a final short batch; ``prefetch > 0`` prepares that many batches in a
    background thread, where ``transform`` also runs.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
    order = None
    if shuffle:
        order = (rng if rng is not None else np.random.default_rng()).permutation(len(x))
    batches = _slices(x, y, order, batch_size, drop_last, transform)
    return _prefetched(batches, prefetch) if prefetch > 0 else batches
