"""What the page shows for one input and one model: pixels, top-k, feature maps, test images.

Everything here is plain NumPy, independent of the web page, so it is tested directly and a
notebook can use it too::

    model = load_served_model("runs/<run>/best.h5")
    result = answer(model, drawing)              # drawing: (H, W[, 3|4]) uint8, any size
    result.pixels, result.top, result.predicted  # (C, H, W) model input, [(name, p)...], "7"
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from common.data import load_dataset
from common.errors import UserError
from scripts.serving.models import ServedModel
from scripts.serving.preprocess import match_run, model_pixels


@dataclass
class Answer:
    """One model's answer: its input ``pixels`` ``(C, H, W)`` uint8, ``probs`` ``(K,)``, the
    ``top`` k ``(class name, probability)`` pairs, and the first conv layer's ``maps`` as an
    RGB grid ``(h, w, 3)`` uint8 (None for MLPs)."""

    pixels: np.ndarray
    probs: np.ndarray
    top: list
    maps: np.ndarray | None

    @property
    def predicted(self) -> str:
        return self.top[0][0]


def answer(model: ServedModel, image: np.ndarray, k: int = 3, *, from_dataset: bool = False,
           maps: bool = True) -> Answer:
    """Preprocess ``image`` for ``model`` and run it.

    ``image``: a drawing or picture ``(H, W[, 3|4])`` uint8, or with ``from_dataset`` a dataset
    image ``(C, H, W)`` (already cropped and centred: only the run's resize is applied).
    """
    pixels = match_run(image, model.input_shape) if from_dataset else \
        model_pixels(image, model.input_shape, model.dataset)
    probs = model.probabilities(pixels)[0]
    fmaps = model.feature_maps(pixels) if maps else None
    return Answer(pixels, probs, model.top_k(probs, k), None if fmaps is None else feature_grid(fmaps))


def predict_dataset_images(model: ServedModel, images: np.ndarray) -> list[str]:
    """Predicted class names of dataset images ``(N, C, H, W)`` uint8 (resized to the model's input)."""
    pixels = np.stack([match_run(img, model.input_shape) for img in images])
    return [str(model.class_names[i]) for i in model.probabilities(pixels).argmax(axis=1)]


def feature_grid(maps: np.ndarray, cell: int = 84, gap: int = 2) -> np.ndarray:
    """``(channels, h, w)`` float maps -> one RGB image ``(rows*cell', cols*cell', 3)`` uint8.

    Each map is scaled to its own [min, max] (a flat map is mid-grey), coloured with the
    'viridis' colour map and enlarged to about ``cell`` pixels with nearest-neighbour repeats.
    """
    from matplotlib import colormaps

    n, h, w = maps.shape
    cols = int(np.ceil(np.sqrt(n)))
    rows = -(-n // cols)
    rep = max(1, cell // max(h, w))
    lo = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - lo
    unit = np.where(span > 0, (maps - lo) / np.where(span > 0, span, 1.0), 0.5)
    tiles = colormaps["viridis"](unit)[..., :3]                       # (n, h, w, 3) in [0, 1]
    tiles = tiles.repeat(rep, axis=1).repeat(rep, axis=2)
    th, tw = h * rep, w * rep
    grid = np.ones((rows * (th + gap) - gap, cols * (tw + gap) - gap, 3))
    for i in range(n):
        r, c = divmod(i, cols)
        grid[r * (th + gap):r * (th + gap) + th, c * (tw + gap):c * (tw + gap) + tw] = tiles[i]
    return np.round(grid * 255).astype(np.uint8)


class TestImages:
    """The test split of each model's dataset, loaded on first use and kept."""

    __test__ = False  # not a pytest class

    def __init__(self, data_dir=None):
        self.data_dir = data_dir
        self._cache: dict = {}

    def split(self, model: ServedModel) -> tuple[np.ndarray, np.ndarray]:
        """``(x_test (N, C, H, W) uint8, y_test (N,))`` of ``model``'s dataset (seeded like its run)."""
        key = (model.dataset, model.seed)
        if key not in self._cache:
            if not model.dataset:
                raise UserError(f"{model.label} does not record its dataset, so it has no test images")
            ds = load_dataset(model.dataset, self.data_dir, explicit=True, seed=model.seed, progress=False)
            self._cache[key] = (ds.x_test, ds.y_test)
        return self._cache[key]

    def sample(self, model: ServedModel, count: int, rng: np.random.Generator):
        """``count`` random test images of ``model``'s dataset and their labels."""
        x, y = self.split(model)
        idx = rng.choice(len(x), size=min(count, len(x)), replace=False)
        return x[idx], y[idx]
