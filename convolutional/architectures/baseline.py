"""BaselineCNN: NNOTT's own MNIST network (not a published architecture), in two variants.

canonical: the previous NNOTT's BaselineCNN, layer for layer. Every conv has a bias.

| layer | output (1x28x28 input) | params |
|---|---|---|
| Conv 3x3 1 -> 32, BN, ReLU | 32 x 28 x 28 | 320 + 64 |
| Conv 3x3 32 -> 64, BN, ReLU | 64 x 28 x 28 | 18,496 + 128 |
| MaxPool 2, Dropout 0.15 | 64 x 14 x 14 | 0 |
| Conv 3x3 64 -> 128, BN, LeakyReLU(0.1) | 128 x 14 x 14 | 73,856 + 256 |
| MaxPool 2, Dropout 0.25 | 128 x 7 x 7 | 0 |
| Flatten, Linear 6272 -> 256, ReLU, Dropout 0.5 | 256 | 1,605,888 |
| Linear 256 -> 10 | 10 | 2,570 |

1,701,578 parameters (1x28x28, 10 classes); 94 % of them in the first Linear layer.
Other input sizes: the two pools leave an (H//4) x (W//4) map; a side longer than 7 is averaged
down to 7 (``AdaptiveAvgPool2D``, as VGG does), so any input of 28x28 or more keeps the 6272 -> 256
head and the same count, and a smaller one flattens its map as it is (3x17x23: 128*4*5 = 2560
inputs). Minimum input 4x4.

gap: three 3x3 conv (no bias) - BN - ReLU layers of 32, 64, 128 channels, a 2x2 max-pool after the
first two, a global average pool and Linear 128 -> classes: 94,186 parameters at any input size,
a quarter of the canonical variant's multiply-adds (7.5 M per 28x28 image against 30.7 M). It
shows what a global-average-pool head saves; on digits it learns more slowly (see the tutorial's
page). ``width`` scales every layer of both variants (default 32).
"""
from __future__ import annotations

from convolutional.conv import Conv2D
from convolutional.layout import Flatten, ToChannelsLast
from convolutional.norm import BatchNorm2D
from convolutional.pooling import AdaptiveAvgPool2D, GlobalAvgPool2D, MaxPool2D
from convolutional.architectures.base import Network
from vectorized.activations import LeakyReLU, ReLU
from vectorized.layers import Dropout, Linear
from vectorized.module import Sequential

VARIANTS = {"canonical": "BaselineCNN (the previous NNOTT's: 3 conv + BN, 6272-256-10 head)",
            "gap": "BaselineCNN-GAP (3 conv + BN without bias, global average pool, one Linear)"}
MIN_SIZE = {"canonical": 4, "gap": 4}
ALIASES = {"small": "canonical"}   # the canonical network is already a small-input one
HEAD_GRID = 7                      # the map the head sees is at most 7 x 7


def auto_variant(height: int, width: int) -> str:
    return "canonical"


def head_grid(height: int, width: int) -> tuple[int, int]:
    """(rows, cols) of the feature map the canonical head flattens: (H//4, W//4), each at most 7."""
    return min(height // 4, HEAD_GRID), min(width // 4, HEAD_GRID)


class BaselineCNN(Network):
    """x: (N, C, H, W) -> (N, num_classes). Children: features, [avgpool,] flatten, classifier."""

    def __init__(self, input_shape=(1, 28, 28), num_classes: int = 10, width: int = 32,
                 dropout: tuple = (0.15, 0.25, 0.5)):
        super().__init__(input_shape, num_classes)
        c, h, w = self.input_shape
        w1, w2, w3 = width, 2 * width, 4 * width
        p1, p2, p3 = dropout
        self.to_channels_last = ToChannelsLast()
        self.features = Sequential(
            Conv2D(c, w1, 3, padding=1), BatchNorm2D(w1), ReLU(),
            Conv2D(w1, w2, 3, padding=1), BatchNorm2D(w2), ReLU(), MaxPool2D(2), Dropout(p1),
            Conv2D(w2, w3, 3, padding=1), BatchNorm2D(w3), LeakyReLU(0.1), MaxPool2D(2), Dropout(p2))
        gh, gw = head_grid(h, w)
        if (gh, gw) != (h // 4, w // 4):
            self.avgpool = AdaptiveAvgPool2D((gh if h // 4 > HEAD_GRID else None,
                                              gw if w // 4 > HEAD_GRID else None))
        self.flatten = Flatten()                                    # (N, w3*gh*gw) in C, H, W order
        self.classifier = Sequential(
            Linear(w3 * gh * gw, 256), ReLU(), Dropout(p3),
            Linear(256, num_classes))


class BaselineGAP(Network):
    """x: (N, C, H, W) -> (N, num_classes). Children: features, pool, classifier."""

    def __init__(self, input_shape=(1, 28, 28), num_classes: int = 10, width: int = 32):
        super().__init__(input_shape, num_classes)
        c = self.input_shape[0]
        w1, w2, w3 = width, 2 * width, 4 * width
        self.to_channels_last = ToChannelsLast()
        self.features = Sequential(
            Conv2D(c, w1, 3, padding=1, bias=False), BatchNorm2D(w1), ReLU(), MaxPool2D(2),
            Conv2D(w1, w2, 3, padding=1, bias=False), BatchNorm2D(w2), ReLU(), MaxPool2D(2),
            Conv2D(w2, w3, 3, padding=1, bias=False), BatchNorm2D(w3), ReLU())
        self.pool = GlobalAvgPool2D()          # (N, w3)
        self.classifier = Linear(w3, num_classes)


def build(input_shape, num_classes, variant, **options) -> Network:
    cls = BaselineGAP if variant == "gap" else BaselineCNN
    return cls(input_shape, num_classes, **options)
