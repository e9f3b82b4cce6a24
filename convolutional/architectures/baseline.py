"""BaselineCNN: NNOTT's own small, fast MNIST network (not a published architecture).

Three 3x3 conv - BatchNorm - ReLU layers (32, 64, 128 channels), a 2x2 max-pool after the first
two, a global average pool and one Linear layer:

| layer | output (1x28x28 input) | params |
|---|---|---|
| Conv 3x3 1 -> 32 (no bias), BN, ReLU | 32 x 28 x 28 | 288 + 64 |
| MaxPool 2 | 32 x 14 x 14 | 0 |
| Conv 3x3 32 -> 64, BN, ReLU | 64 x 14 x 14 | 18,432 + 128 |
| MaxPool 2 | 64 x 7 x 7 | 0 |
| Conv 3x3 64 -> 128, BN, ReLU | 128 x 7 x 7 | 73,728 + 256 |
| global average pool | 128 | 0 |
| Linear 128 -> 10 | 10 | 1,290 |

94,186 parameters (1x28x28, 10 classes), about 7.5 M multiply-adds per 28x28 image (LeNet:
0.4 M, CIFAR ResNet18: 456 M). The global average pool makes it work for any input of at least
4x4, with the same parameter count. ``width`` scales every layer (default 32).
"""
from __future__ import annotations

from convolutional.conv import Conv2D
from convolutional.layout import ToChannelsLast
from convolutional.norm import BatchNorm2D
from convolutional.pooling import GlobalAvgPool2D, MaxPool2D
from convolutional.architectures.base import Network
from vectorized.activations import ReLU
from vectorized.layers import Linear
from vectorized.module import Sequential

VARIANTS = {"canonical": "BaselineCNN (NNOTT's own; one variant for every input size)"}
MIN_SIZE = {"canonical": 4}


def auto_variant(height: int, width: int) -> str:
    return "canonical"


class BaselineCNN(Network):
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


def build(input_shape, num_classes, variant, **options) -> BaselineCNN:
    return BaselineCNN(input_shape, num_classes, **options)
