"""The ``Dataset`` record every loader returns."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Dataset:
    """Train and test images with integer labels, in the project-wide layout.

    x_train, x_test: uint8 ``(N, C, H, W)``; y_train, y_test: int64 ``(N,)``.
    Toy tasks (:mod:`common.data.toys`) hold points instead: float32 ``(N, D, 1, 1)`` (D features
    as channels of a 1x1 image), with float32 targets when ``task`` is ``"regression"``.
    ``fell_back`` is True when ``mnist`` was unavailable and ``synth-digits`` was used instead;
    ``source`` says where the arrays came from (cache path, local directory...).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    fell_back: bool = False
    source: str = ""
    task: str = "classification"     # or "regression" (a toy task's float targets)

    def __post_init__(self):
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.ndim != 4 or x.dtype not in (np.uint8, np.float32):
                raise ValueError(f"x_{split} must be uint8 (or float32 points) (N, C, H, W), got {x.dtype} {x.shape}")
            if y.shape != (len(x),):
                raise ValueError(f"y_{split} must have shape ({len(x)},), got {y.shape}")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError(f"train images {self.x_train.shape[1:]} and test images "
                             f"{self.x_test.shape[1:]} differ in shape")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)``."""
        return tuple(self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return self.image_shape[0]

    @property
    def is_points(self) -> bool:
        """True for a toy task: feature vectors, not images."""
        return self.x_train.dtype == np.float32

    def describe(self) -> str:
        """One line for the run header, e.g. ``mnist: 60000 train / 10000 test, 1x28x28, 10 classes``."""
        c, h, w = self.image_shape
        if self.is_points:
            kind = "regression" if self.task == "regression" else f"{self.num_classes} classes"
            features = f"{c} feature{'s' if c > 1 else ''}"
            return f"{self.name}: {len(self.x_train)} train / {len(self.x_test)} test points, {features}, {kind}"
        text = (f"{self.name}: {len(self.x_train)} train / {len(self.x_test)} test, "
                f"{c}x{h}x{w}, {self.num_classes} classes")
        if self.fell_back:
            text += " (fell back from mnist)"
        return text
