"""Figures for the toy tasks: decision boundaries over the plane, fitted curves, animations.

A classifier's view of the plane is drawn from its predicted probabilities on a grid of
points: each grid cell takes the colour of its most likely class, faded towards white where
the model is unsure (max probability near 1/K), so the boundary shows as a pale band.  The
training points are drawn on top in the same colours.

Models are not called here: the caller evaluates them on :func:`plane_grid` points (or on a
line of x values for a regression) and hands over the numbers, so every tier can use these
figures.  PNG files are written like the rest of :mod:`common.plots`; animations are GIFs
written with matplotlib's ``PillowWriter``, one frame per recorded epoch.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from common.errors import UserError
from common.plots import _closes_on_error, _finish, plt

#: class colours (RGB in [0, 1]): matplotlib's tab10
CLASS_COLOURS = np.array(plt.get_cmap("tab10").colors)


def plane_grid(x, steps: int = 150, margin: float = 0.15):
    """A steps x steps grid covering the points ``x`` (N, 2) plus a margin on each side.

    Returns ``(extent, points)``: extent = (x_min, x_max, y_min, y_max) for ``imshow``, points
    = float32 ``(steps * steps, 2)`` in row-major order, the first row at y_min.
    """
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    if x.shape[1] != 2:
        raise UserError(f"a decision boundary needs points in the plane (N, 2), got shape {x.shape}")
    lo, hi = x.min(axis=0), x.max(axis=0)
    pad = margin * np.maximum(hi - lo, 1e-6)
    lo, hi = lo - pad, hi + pad
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], steps), np.linspace(lo[1], hi[1], steps))
    points = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)
    return (lo[0], hi[0], lo[1], hi[1]), points


def region_image(probs, steps: int) -> np.ndarray:
    """Grid probabilities ``(steps * steps, K)`` -> an RGB image ``(steps, steps, 3)`` in [0, 1].

    Colour of the argmax class, mixed with white by confidence c = (p_max - 1/K) / (1 - 1/K).
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] != steps * steps:
        raise UserError(f"expected grid probabilities ({steps * steps}, K), got shape {probs.shape}")
    k = probs.shape[1]
    if k > len(CLASS_COLOURS):
        raise UserError(f"at most {len(CLASS_COLOURS)} classes can be coloured, got {k}")
    top = probs.argmax(axis=1)
    confidence = (probs.max(axis=1) - 1.0 / k) / (1.0 - 1.0 / k)
    strength = 0.12 + 0.33 * np.clip(confidence, 0.0, 1.0)[:, None]   # never fully saturated: the dots must show
    rgb = (1.0 - strength) + strength * CLASS_COLOURS[top]
    return rgb.reshape(steps, steps, 3)


def _draw_regions(ax, extent, probs, x, y):
    steps = int(round(np.sqrt(len(probs))))
    ax.imshow(region_image(probs, steps), extent=extent, origin="lower", aspect="auto", interpolation="bilinear")
    x = np.asarray(x).reshape(len(x), -1)
    y = np.asarray(y).astype(int)
    ax.scatter(x[:, 0], x[:, 1], c=CLASS_COLOURS[y], s=10, edgecolors="black", linewidths=0.3)
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")


@_closes_on_error
def plot_decision_boundary(extent, probs, x, y, path, title: str | None = None, show: bool = False) -> Path:
    """Class regions of the plane (from ``probs`` on a :func:`plane_grid`) with the points (x, y)."""
    fig, ax = plt.subplots(figsize=(5, 5))
    _draw_regions(ax, extent, probs, x, y)
    if title:
        ax.set_title(title, fontsize=10)
    return _finish(fig, path, show)


@_closes_on_error
def plot_boundaries(panels, x, y, path, show: bool = False) -> Path:
    """Several decision boundaries side by side: ``panels`` = [(title, extent, probs), ...]."""
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.6), squeeze=False)
    for ax, (title, extent, probs) in zip(axes.flat, panels):
        _draw_regions(ax, extent, probs, x, y)
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _finish(fig, path, show)


def line_grid(x, steps: int = 400, margin: float = 0.05) -> np.ndarray:
    """Float32 ``(steps, 1)`` x values spanning the 1-D inputs ``x`` plus a margin."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    pad = margin * max(float(x.max() - x.min()), 1e-6)
    return np.linspace(x.min() - pad, x.max() + pad, steps, dtype=np.float32)[:, None]


def _draw_fit(ax, x, y, x_line, y_line, target=None):
    ax.scatter(np.ravel(x), np.ravel(y), s=6, color="0.55", label="training points")
    if target is not None:
        ax.plot(np.ravel(x_line), target(np.ravel(x_line)), color="black", lw=1.2, ls="--", label="true function")
    ax.plot(np.ravel(x_line), np.ravel(y_line), color=CLASS_COLOURS[3], lw=2.2, label="network")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")


@_closes_on_error
def plot_regression_fit(x, y, x_line, y_line, path, target=None, title: str | None = None,
                        show: bool = False) -> Path:
    """The points (x, y), the network's curve (x_line, y_line) and, if given, the true ``target(x)``."""
    fig, ax = plt.subplots(figsize=(6, 4))
    _draw_fit(ax, x, y, x_line, y_line, target)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _finish(fig, path, show)


def _save_animation(fig, draw, n_frames: int, path, fps: int) -> Path:
    from matplotlib.animation import FuncAnimation, PillowWriter

    if n_frames < 1:
        raise UserError("an animation needs at least one recorded frame")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        FuncAnimation(fig, draw, frames=n_frames, blit=False).save(path, writer=PillowWriter(fps=fps), dpi=80)
    finally:
        plt.close(fig)
    return path


@_closes_on_error
def animate_boundary(frames, extent, x, y, path, fps: int = 8) -> Path:
    """A GIF of the decision boundary as it learns: ``frames`` = [(title, probs), ...]."""
    fig, ax = plt.subplots(figsize=(4.5, 4.5))

    def draw(i):
        ax.clear()
        title, probs = frames[i]
        _draw_regions(ax, extent, probs, x, y)
        ax.set_title(title, fontsize=10)

    return _save_animation(fig, draw, len(frames), path, fps)


@_closes_on_error
def animate_fit(frames, x, y, x_line, path, target=None, fps: int = 8) -> Path:
    """A GIF of a regression curve as it learns: ``frames`` = [(title, y_line), ...]."""
    fig, ax = plt.subplots(figsize=(6, 4))
    values = np.concatenate([np.ravel(y)] + [np.ravel(f[1]) for f in frames])
    lo, hi = np.percentile(values, [0.5, 99.5])
    pad = 0.1 * (hi - lo + 1e-6)

    def draw(i):
        ax.clear()
        title, y_line = frames[i]
        _draw_fit(ax, x, y, x_line, y_line, target)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_title(title, fontsize=10)

    return _save_animation(fig, draw, len(frames), path, fps)
