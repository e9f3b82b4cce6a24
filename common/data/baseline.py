"""A linear baseline: softmax regression on raw pixels, to tell how hard a dataset is.

If a linear classifier already scores 98 %, the dataset cannot show what convolutions add.
Run it from the repository root::

    python -m common.data.baseline synth-digits

It prints the load (or generation) time and the test accuracy of softmax regression trained
with mini-batch SGD + momentum on standardised pixels.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from common.data.batches import iterate_batches


def _features(x: np.ndarray, mean=None, std=None):
    """``(N, C, H, W)`` uint8 -> ``(N, D)`` float32 pixels standardised per pixel."""
    f = x.reshape(len(x), -1).astype(np.float32) / 255.0
    if mean is None:
        mean, std = f.mean(axis=0), f.std(axis=0) + 1e-3
    return (f - mean) / std, mean, std


def softmax_regression_accuracy(x_train, y_train, x_test, y_test, *, epochs: int = 15,
                                batch_size: int = 256, lr: float = 0.05, momentum: float = 0.9,
                                weight_decay: float = 1e-4, seed: int = 0) -> float:
    """Test accuracy of softmax regression ``p = softmax(x W + b)`` trained with SGD + momentum."""
    f_train, mean, std = _features(x_train)
    f_test, _, _ = _features(x_test, mean, std)
    k = int(max(y_train.max(), y_test.max())) + 1
    w = np.zeros((f_train.shape[1], k), np.float32)
    b = np.zeros(k, np.float32)
    vw, vb = np.zeros_like(w), np.zeros_like(b)
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        for fb, yb in iterate_batches(f_train, y_train, batch_size, rng=rng):
            z = fb @ w + b
            p = np.exp(z - z.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            p[np.arange(len(yb)), yb] -= 1.0          # dL/dz of the mean cross-entropy, times N
            g = p / len(yb)
            vw = momentum * vw + fb.T @ g + weight_decay * w
            vb = momentum * vb + g.sum(axis=0)
            w -= lr * vw
            b -= lr * vb
    return float(((f_test @ w + b).argmax(axis=1) == y_test).mean())


def main(argv=None) -> None:
    from common.data.registry import load_dataset

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dataset", nargs="?", default="synth-digits")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    ds = load_dataset(args.dataset, args.data_dir, seed=args.seed)
    print(f"{ds.describe()}; loaded in {time.perf_counter() - start:.1f} s from {ds.source}")
    start = time.perf_counter()
    acc = softmax_regression_accuracy(ds.x_train, ds.y_train, ds.x_test, ds.y_test,
                                      epochs=args.epochs, seed=args.seed)
    print(f"softmax regression ({args.epochs} epochs): test accuracy {acc:.4f} "
          f"({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
