"""Figures for training runs: curves, confusion matrices, image grids, filters.

Every function saves a PNG (parent folders are created), closes the figure and returns the path.
Nothing ever blocks: without a display matplotlib draws with the headless Agg backend; with a
display, ``show=True`` opens a non-blocking window and :func:`wait_for_windows` (call it once at
the end of a run) keeps the windows up until the user closes them.

Images are ``(N, C, H, W)`` with 1 or 3 channels, uint8 or float.
"""
from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import matplotlib
import numpy as np

from common.errors import UserError


def has_display() -> bool:
    """True where windows can open (a desktop session, or Windows/macOS)."""
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


# Choose Agg only when nothing else decided: leave an explicit MPLBACKEND, a running notebook
# and an already-imported pyplot (an interactive session) alone.
if (not has_display() and "MPLBACKEND" not in os.environ
        and "matplotlib.pyplot" not in sys.modules and "ipykernel" not in sys.modules):
    matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (after the backend choice)


def _interactive() -> bool:
    return has_display() and plt.get_backend().lower() not in ("agg", "pdf", "svg", "ps", "cairo", "template")


def _finish(fig, path, show: bool) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    if show and _interactive():
        plt.show(block=False)
        plt.pause(0.001)
    else:
        plt.close(fig)
    return path


def _closes_on_error(plot):
    """A plot that fails half-way (bad input) must not leave a half-drawn figure open."""
    @functools.wraps(plot)
    def wrapper(*args, **kwargs):
        before = set(plt.get_fignums())
        try:
            return plot(*args, **kwargs)
        except Exception:
            for num in set(plt.get_fignums()) - before:
                plt.close(num)
            raise
    return wrapper


def wait_for_windows() -> None:
    """Block until open windows are closed; returns at once when none are open or headless."""
    if _interactive() and plt.get_fignums():
        plt.show()


def to_display(image: np.ndarray) -> np.ndarray:
    """(C, H, W) uint8 or float -> (H, W) or (H, W, 3) floats in [0, 1] for imshow.

    Floats outside [0, 1] (normalized images) are rescaled by their own min and max.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise UserError(f"an image to plot must be (C, H, W) with 1 or 3 channels, got shape {image.shape}")
    if image.dtype == np.uint8:
        img = image.astype(np.float32) / 255.0
    else:
        img = image.astype(np.float32)
        lo, hi = img.min(), img.max()
        if lo < 0 or hi > 1:
            img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
    return img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)


def _grid(n: int, ncols: int, cell: float = 1.2):
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(cell * ncols, (cell + 0.25) * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    return fig, axes.flat


def _show_image(ax, image, title=None, color="black"):
    img = to_display(image)
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    if title is not None:
        ax.set_title(title, fontsize=8, color=color)


def _label(i, class_names):
    return str(class_names[int(i)]) if class_names is not None else str(int(i))


# --------------------------------------------------------------------------- curves
_PANELS = (("loss", "loss"), ("accuracy", "acc"), ("R^2", "r2"), ("learning rate", "lr"))


def _panel_of(key: str):
    key = key.lower()
    if "loss" in key:
        return "loss"
    if "acc" in key:
        return "accuracy"
    if key == "r2" or key.endswith("_r2"):   # a regression's score
        return "R^2"
    if key == "lr" or key.endswith("_lr") or "learning_rate" in key:
        return "learning rate"
    return None


@_closes_on_error
def plot_history(history: dict[str, list[float]], path, show: bool = False) -> Path:
    """Training curves by epoch: a loss panel, an accuracy panel and a learning-rate panel.

    Keys are sorted into panels by name (``loss``, ``val_loss`` -> loss; ``acc``, ``val_acc`` ->
    accuracy; ``lr`` -> learning rate); other keys and empty panels are skipped.
    """
    panels = {title: [k for k, v in history.items() if _panel_of(k) == title and len(v)] for title, _ in _PANELS}
    panels = {title: keys for title, keys in panels.items() if keys}
    if not panels:
        raise UserError(f"history has no loss, accuracy or lr values to plot (keys: {sorted(history)})")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.5), squeeze=False)
    for ax, (title, keys) in zip(axes.flat, panels.items()):
        for key in keys:
            values = history[key]
            ax.plot(np.arange(1, len(values) + 1), values, marker="o", markersize=3, label=key)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
        if title == "learning rate" and min(min(history[k]) for k in keys) > 0:
            ax.set_yscale("log")
    fig.tight_layout()
    return _finish(fig, path, show)


@_closes_on_error
def plot_histories(histories: dict[str, dict], path, metric: str = "val_acc", show: bool = False) -> Path:
    """One curve per run (e.g. per optimizer) of ``metric`` by epoch, overlaid for comparison."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, history in histories.items():
        if metric not in history:
            raise UserError(f"run {name!r} has no {metric!r} in its history (it has {sorted(history)})")
        values = history[metric]
        ax.plot(np.arange(1, len(values) + 1), values, marker="o", markersize=3, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return _finish(fig, path, show)


@_closes_on_error
def plot_lr_schedule(lrs, path, show: bool = False) -> Path:
    """Learning rate by step: a list, or {schedule name: list} to compare schedules."""
    curves = lrs if isinstance(lrs, dict) else {"lr": lrs}
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, values in curves.items():
        ax.plot(np.arange(len(values)), values, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    ax.grid(alpha=0.3)
    if len(curves) > 1:
        ax.legend()
    fig.tight_layout()
    return _finish(fig, path, show)


# --------------------------------------------------------------------------- confusion matrix
@_closes_on_error
def plot_confusion_matrix(cm, path, class_names=None, normalize: bool = False, show: bool = False) -> Path:
    """Heat map of a (K, K) confusion matrix (rows true, columns predicted).

    ``normalize=True`` divides each row by its count, so the diagonal shows per-class recall.
    """
    cm = np.asarray(cm)
    k = len(cm)
    names = [_label(i, class_names) for i in range(k)]
    values = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    fig, ax = plt.subplots(figsize=(1.0 + 0.5 * k, 0.8 + 0.5 * k))
    im = ax.imshow(values, cmap="Blues", vmin=0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(k), names, rotation=45, ha="right")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 20:
        threshold = values.max() / 2
        for (i, j), v in np.ndenumerate(values):
            ax.text(j, i, f"{v:.2f}" if normalize else str(v), ha="center", va="center", fontsize=7,
                    color="white" if v > threshold else "black")
    fig.tight_layout()
    return _finish(fig, path, show)


# --------------------------------------------------------------------------- image grids
@_closes_on_error
def plot_samples(images, labels, path, class_names=None, ncols: int = 10, show: bool = False) -> Path:
    """A grid of images (N, C, H, W) titled with their labels."""
    images = np.asarray(images)
    if len(images) == 0:
        raise UserError("no images to plot")
    fig, axes = _grid(len(images), ncols)
    for ax, image, label in zip(axes, images, labels):
        _show_image(ax, image, _label(label, class_names))
    fig.tight_layout()
    return _finish(fig, path, show)


@_closes_on_error
def plot_misclassified(images, y_true, y_pred, path, class_names=None, max_images: int = 25,
                       show: bool = False) -> Path:
    """The first ``max_images`` wrongly classified images, titled 'true x / pred y'."""
    wrong = np.flatnonzero(np.asarray(y_true) != np.asarray(y_pred))[:max_images]
    if wrong.size == 0:
        fig, ax = plt.subplots(figsize=(4, 1))
        ax.axis("off")
        ax.text(0.5, 0.5, "no misclassified images", ha="center", va="center")
        return _finish(fig, path, show)
    fig, axes = _grid(wrong.size, 5, cell=1.6)
    for ax, i in zip(axes, wrong):
        title = f"true {_label(y_true[i], class_names)} / pred {_label(y_pred[i], class_names)}"
        _show_image(ax, images[i], title, color="firebrick")
    fig.tight_layout()
    return _finish(fig, path, show)


@_closes_on_error
def plot_augmentations(rows: dict[str, np.ndarray], path, show: bool = False) -> Path:
    """One row per augmentation: name -> batch (N, C, H, W) of the same N images.

    ``common.augment.demo_batches(x)`` makes such rows with every op applied.
    """
    names = list(rows)
    n = len(rows[names[0]])
    fig, axes = plt.subplots(len(names), n, figsize=(1.1 * n + 1.6, 1.1 * len(names)), squeeze=False)
    for r, name in enumerate(names):
        for c in range(n):
            ax = axes[r, c]
            _show_image(ax, rows[name][c])
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    fig.tight_layout()
    return _finish(fig, path, show)


@_closes_on_error
def plot_filters(weight, path, max_filters: int = 64, show: bool = False) -> Path:
    """First-layer conv filters, weight (OC, IC, kh, kw): RGB when IC == 3, else input channel 0.

    Each filter is scaled by its own largest |w| so that 0 is mid-gray (or mid-colour).
    """
    w = np.asarray(weight, dtype=np.float32)
    if w.ndim != 4:
        raise UserError(f"plot_filters needs a conv weight (OC, IC, kh, kw), got shape {w.shape}")
    w = w[:max_filters] if w.shape[1] == 3 else w[:max_filters, :1]
    scale = np.abs(w).max(axis=(1, 2, 3), keepdims=True)
    w = 0.5 + 0.5 * w / np.where(scale > 0, scale, 1.0)
    fig, axes = _grid(len(w), 8, cell=0.9)
    for ax, f in zip(axes, w):
        _show_image(ax, f)
    fig.tight_layout()
    return _finish(fig, path, show)
