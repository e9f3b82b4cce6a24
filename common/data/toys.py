"""Toy tasks you can see: small generated 1-D and 2-D datasets, seeded and offline.

Classification (2 input features, points in the plane):

- ``rings``: a bullseye, a disc in the middle and K-1 rings around it, one class each;
- ``blobs``: K Gaussian clouds whose centres sit on a circle;
- ``moons``: two interleaved half circles;
- ``spirals``: K arms winding out of the origin;
- ``xor``: the four quadrants, class = sign(x1) XOR sign(x2).

Regression (1 input feature, a float target):

- ``piecewise``: ``max(0, 0.5x + 0.2) + 0.3 max(0, -x + 0.5)``, two ReLUs, so a hidden layer
  of two ReLU units can represent it exactly;
- ``sine``: ``sin(x)`` over two periods.

Every task takes a size, a noise level and a seed; the test set is drawn from the same
distribution with an independent stream of the same seed.  In the project-wide layout the D
features of a point are D channels of a 1x1 image: ``x`` is float32 ``(N, D, 1, 1)``, so the
same splits, batches and per-channel normalizer serve images and points alike.  Labels are
int64 ``(N,)`` for classification and float32 ``(N,)`` for regression.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from common.errors import UserError


# --------------------------------------------------------------------------- regression targets
def piecewise_target(x):
    """max(0, 0.5x + 0.2) + 0.3 max(0, -x + 0.5)."""
    return np.maximum(0.0, 0.5 * x + 0.2) + 0.3 * np.maximum(0.0, -x + 0.5)


def sine_target(x):
    return np.sin(x)


def _regression(target: Callable, lo: float, hi: float):
    def make(n, noise, k, rng):
        x = rng.uniform(lo, hi, size=n)
        y = target(x) + noise * rng.standard_normal(n)
        return x[:, None], y
    return make


# --------------------------------------------------------------------------- classification
def _balanced_labels(n: int, k: int, rng) -> np.ndarray:
    """n labels with every class n//k or n//k + 1 times, in a random order."""
    return rng.permutation(np.arange(n) % k)


def make_rings(n, noise, k, rng):
    """Class c lies at radius ~ U(c, c + 0.6) (class 0 is a disc), angle ~ U(0, 2 pi)."""
    y = _balanced_labels(n, k, rng)
    u = rng.uniform(0, 1, n)
    radius = np.where(y == 0, 0.6 * np.sqrt(u), y + 0.6 * u)  # sqrt: uniform over the disc's area
    angle = rng.uniform(0, 2 * np.pi, n)
    x = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    return x + noise * rng.standard_normal(x.shape), y


def make_blobs(n, noise, k, rng):
    """Centres at radius 2 on K equally spaced angles; spread ``noise`` around each."""
    y = _balanced_labels(n, k, rng)
    angles = 2 * np.pi * np.arange(k) / k
    centres = 2.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return centres[y] + noise * rng.standard_normal((n, 2)), y


def make_moons(n, noise, k, rng):
    """Upper half circle (class 0) and a lower one shifted by (1, 0.5) (class 1)."""
    y = _balanced_labels(n, 2, rng)
    t = rng.uniform(0, np.pi, n)
    upper = np.stack([np.cos(t), np.sin(t)], axis=1)
    lower = np.stack([1 - np.cos(t), 0.5 - np.sin(t)], axis=1)
    x = np.where(y[:, None] == 0, upper, lower)
    return x + noise * rng.standard_normal(x.shape), y


def make_spirals(n, noise, k, rng):
    """Arm c: radius r ~ U(0.05, 1), angle 3.5 r pi + 2 pi c / K (one and three-quarter turns)."""
    y = _balanced_labels(n, k, rng)
    r = rng.uniform(0.05, 1.0, n)
    angle = 3.5 * np.pi * r + 2 * np.pi * y / k
    x = 2.0 * r[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return x + noise * rng.standard_normal(x.shape), y


def make_xor(n, noise, k, rng):
    """Uniform in [-1, 1]^2 away from the axes (|x_i| > 0.1); class 1 where the signs differ."""
    magnitude = rng.uniform(0.1, 1.0, (n, 2))
    y = _balanced_labels(n, 2, rng)
    first = rng.choice([-1.0, 1.0], n)
    second = np.where(y == 1, -first, first)
    x = magnitude * np.stack([first, second], axis=1)
    return x + noise * rng.standard_normal(x.shape), y


# --------------------------------------------------------------------------- the catalogue
@dataclass(frozen=True)
class ToySpec:
    """One toy task: its generator, task type and defaults."""

    name: str
    task: str                    # "classification" or "regression"
    make: Callable               # (n, noise, k, rng) -> x (n, D), y (n,)
    noise: float                 # default noise (std of the Gaussian added to x, or to y)
    classes: int = 0             # default K (0: fixed by the task or regression)
    fixed_classes: int = 0       # moons and xor always have 2
    description: str = ""
    target: Callable | None = None   # the noise-free function of a regression task

    @property
    def features(self) -> int:
        return 1 if self.task == "regression" else 2


TOYS: dict[str, ToySpec] = {
    "piecewise": ToySpec("piecewise", "regression", _regression(piecewise_target, -3.0, 3.0), 0.05,
                         description="1-D regression, max(0, 0.5x + 0.2) + 0.3 max(0, -x + 0.5)",
                         target=piecewise_target),
    "sine": ToySpec("sine", "regression", _regression(sine_target, -2 * np.pi, 2 * np.pi), 0.1,
                    description="1-D regression, sin(x) on [-2 pi, 2 pi]", target=sine_target),
    "rings": ToySpec("rings", "classification", make_rings, 0.08, classes=2,
                     description="concentric rings (bullseye), 2-D, K classes (default 2)"),
    "blobs": ToySpec("blobs", "classification", make_blobs, 0.8, classes=3,
                     description="Gaussian blobs, 2-D, K classes (default 3)"),
    "moons": ToySpec("moons", "classification", make_moons, 0.15, fixed_classes=2,
                     description="two interleaved moons, 2-D, 2 classes"),
    "spirals": ToySpec("spirals", "classification", make_spirals, 0.05, classes=3,
                       description="spirals, 2-D, K arms (default 3)"),
    "xor": ToySpec("xor", "classification", make_xor, 0.05, fixed_classes=2,
                   description="XOR of the signs of x1 and x2, 2-D, 2 classes"),
}
TOY_NAMES = tuple(TOYS)
DEFAULT_TOY_SIZE = 1000          # training points; the test set has half as many


def is_toy(name) -> bool:
    return str(name).strip().lower() in TOYS


def num_classes_of(spec: ToySpec, classes: int | None) -> int:
    """K for a classification task (the flag, or the default); 1 output for regression."""
    if spec.task == "regression":
        if classes is not None:
            raise UserError(f"--toy-classes does not apply to {spec.name}, a regression task")
        return 1
    if spec.fixed_classes:
        if classes is not None and classes != spec.fixed_classes:
            raise UserError(f"{spec.name} always has {spec.fixed_classes} classes; drop --toy-classes")
        return spec.fixed_classes
    k = spec.classes if classes is None else int(classes)
    if not 2 <= k <= 10:
        raise UserError(f"--toy-classes must be between 2 and 10 for {spec.name}, got {k}")
    return k


def make_toy(name: str, n: int, *, noise: float | None = None, classes: int | None = None,
             seed: int = 0):
    """``n`` points of toy task ``name``: x float32 ``(n, D)`` and y ``(n,)``.

    y is int64 class labels (balanced to within one) or float32 regression targets.
    """
    spec = TOYS[str(name).strip().lower()]
    if n < 1:
        raise UserError(f"a toy dataset needs at least 1 point, got {n}")
    noise = spec.noise if noise is None else float(noise)
    if noise < 0:
        raise UserError(f"--toy-noise must be >= 0, got {noise}")
    k = num_classes_of(spec, classes)
    x, y = spec.make(int(n), noise, k, np.random.default_rng(seed))
    y = y.astype(np.float32) if spec.task == "regression" else y.astype(np.int64)
    return x.astype(np.float32), y


def class_names_of(name: str, classes: int | None = None) -> list[str]:
    spec = TOYS[str(name).strip().lower()]
    if spec.task == "regression":
        return []
    return [f"class {c}" for c in range(num_classes_of(spec, classes))]


def as_points(x):
    """Features ``(N, D)`` -> ``(N, D, 1, 1)``: D channels of a 1x1 image, the pipeline's layout."""
    return np.asarray(x, dtype=np.float32)[:, :, None, None]


def load_toy(name: str, *, seed: int = 0, size: int | None = None, noise: float | None = None,
             classes: int | None = None):
    """A :class:`common.data.Dataset` of ``size`` training and ``size // 2`` test points.

    Train and test come from independent streams of ``seed`` (``[seed, 0]`` and ``[seed, 1]``).
    """
    from common.data.dataset import Dataset

    spec = TOYS[str(name).strip().lower()]
    n = DEFAULT_TOY_SIZE if size is None else int(size)
    if n < 20:
        raise UserError(f"--toy-size must be at least 20 points, got {n}")
    x_tr, y_tr = make_toy(spec.name, n, noise=noise, classes=classes, seed=np.random.SeedSequence([seed, 0]))
    x_te, y_te = make_toy(spec.name, max(n // 2, 10), noise=noise, classes=classes,
                          seed=np.random.SeedSequence([seed, 1]))
    return Dataset(spec.name, as_points(x_tr), y_tr, as_points(x_te), y_te, class_names_of(spec.name, classes),
                   source=f"generated ({spec.description}, seed {seed})", task=spec.task)


def refuse_for_images(name, what: str = "the convolutional tier") -> None:
    """One line for a launcher that needs images when it is handed a toy task."""
    if is_toy(name):
        raise UserError(f"{name} is a toy task of points in the plane, not images, so {what} cannot train "
                        f"on it; use python vectorized/main.py --dataset {name} (or scalar/main.py)")
