"""AlexNet (Krizhevsky, Sutskever, Hinton, 2012) as torchvision builds it.

torchvision follows the single-GPU "one weird trick" version (Krizhevsky 2014): 64-192-384-256-256
channels instead of 96-256-384-384-256 and no local response normalisation.

| layer | output (3x224x224) | params |
|---|---|---|
| Conv 11x11 stride 4 pad 2, 64; ReLU; MaxPool 3 stride 2 | 64 x 27 x 27 | 23,296 |
| Conv 5x5 pad 2, 192; ReLU; MaxPool 3 stride 2 | 192 x 13 x 13 | 307,392 |
| Conv 3x3, 384; Conv 3x3, 256; Conv 3x3, 256; ReLUs | 256 x 13 x 13 | 2,139,008 |
| MaxPool 3 stride 2; AdaptiveAvgPool 6x6 | 256 x 6 x 6 | 0 |
| Dropout, Linear 9216 -> 4096, ReLU, Dropout, Linear 4096 -> 4096, ReLU | 4096 | 54,534,144 |
| Linear 4096 -> 1000 | 1000 | 4,097,000 |

61,100,840 parameters; minimum input 63x63 (the last max-pool then sees a 3x3 map).

The 'small' variant (28x28 / 32x32 inputs) swaps the 11x11 stride-4 stem for a 3x3 stride-1
conv and pools adaptively to 3x3 instead of 6x6 (first Linear 2304 -> 4096). Every other layer,
and every name, is torchvision's: 28,711,754 parameters at 3x32x32 and 10 classes.
"""
from __future__ import annotations

from convolutional.conv import Conv2D
from convolutional.layout import Flatten, ToChannelsLast
from convolutional.pooling import AdaptiveAvgPool2D, MaxPool2D
from convolutional.architectures.base import Network
from vectorized.activations import ReLU
from vectorized.layers import Dropout, Linear
from vectorized.module import Sequential

VARIANTS = {"canonical": "AlexNet (torchvision: 11x11 stride-4 stem, 6x6 adaptive pool)",
            "small": "AlexNet, small-input stem (3x3 stride 1) and 3x3 adaptive pool"}
MIN_SIZE = {"canonical": 63, "small": 15}


def auto_variant(height: int, width: int) -> str:
    return "small" if max(height, width) <= 64 else "canonical"


class AlexNet(Network):
    """x: (N, C, H, W) -> (N, num_classes). Children: features, avgpool, flatten, classifier."""

    def __init__(self, input_shape=(3, 224, 224), num_classes: int = 1000, small: bool = False,
                 dropout: float = 0.5):
        super().__init__(input_shape, num_classes)
        c = self.input_shape[0]
        stem = Conv2D(c, 64, 3, stride=1, padding=1) if small else Conv2D(c, 64, 11, stride=4, padding=2)
        self.to_channels_last = ToChannelsLast()
        self.features = Sequential(
            stem, ReLU(), MaxPool2D(3, 2),
            Conv2D(64, 192, 5, padding=2), ReLU(), MaxPool2D(3, 2),
            Conv2D(192, 384, 3, padding=1), ReLU(),
            Conv2D(384, 256, 3, padding=1), ReLU(),
            Conv2D(256, 256, 3, padding=1), ReLU(), MaxPool2D(3, 2))
        side = 3 if small else 6
        self.avgpool = AdaptiveAvgPool2D(side)
        self.flatten = Flatten()                  # (N, 256*side*side) in C, H, W order
        self.classifier = Sequential(
            Dropout(dropout), Linear(256 * side * side, 4096), ReLU(),
            Dropout(dropout), Linear(4096, 4096), ReLU(),
            Linear(4096, num_classes))


def build(input_shape, num_classes, variant, **options) -> AlexNet:
    return AlexNet(input_shape, num_classes, small=(variant == "small"), **options)
