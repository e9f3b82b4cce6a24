"""VGG16 (Simonyan and Zisserman, 2014): thirteen 3x3 convolutions and five max-pools.

Configuration "D": 64, 64, M, 128, 128, M, 256 x3, M, 512 x3, M, 512 x3, M (M = 2x2 max-pool).

canonical (torchvision ``vgg16``, no BatchNorm): AdaptiveAvgPool 7x7, then
Linear 25088 -> 4096, ReLU, Dropout, Linear 4096 -> 4096, ReLU, Dropout, Linear 4096 -> classes:
138,357,544 parameters at 1000 classes (14,714,688 of them in the convolutions). Minimum input
32x32 (five pools halve it to 1x1).

small (CIFAR VGG16-BN, as in kuangliu/pytorch-cifar): a BatchNorm after every conv, and the head is a
global average pool and one Linear 512 -> classes: 14,728,266 parameters at 3x32x32, 10 classes.
A 28x28 input would shrink 28 -> 14 -> 7 -> 3 -> 1 -> 0, so a max-pool that would receive a 1x1
map is left out (an Identity keeps the layer numbering, and torchvision's names, intact).
Minimum input 16x16 (only the last pool is ever left out).
"""
from __future__ import annotations

from convolutional.conv import Conv2D
from convolutional.layout import Flatten, ToChannelsLast
from convolutional.norm import BatchNorm2D
from convolutional.pooling import AdaptiveAvgPool2D, GlobalAvgPool2D, MaxPool2D
from convolutional.architectures.base import Network
from vectorized.activations import ReLU
from vectorized.layers import Dropout, Identity, Linear
from vectorized.module import Sequential

VGG16_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")

VARIANTS = {"canonical": "VGG16 (torchvision, no BatchNorm, 4096-4096 head)",
            "small": "VGG16-BN, CIFAR head (global average pool, Linear 512 -> classes)"}
MIN_SIZE = {"canonical": 32, "small": 16}


def auto_variant(height: int, width: int) -> str:
    return "small" if max(height, width) <= 64 else "canonical"


class VGG16(Network):
    """x: (N, C, H, W) -> (N, num_classes). Children: features, avgpool, [flatten,] classifier."""

    def __init__(self, input_shape=(3, 224, 224), num_classes: int = 1000, small: bool = False,
                 batch_norm: bool | None = None, dropout: float = 0.5):
        super().__init__(input_shape, num_classes)
        c, h, w = self.input_shape
        self.batch_norm = small if batch_norm is None else bool(batch_norm)
        layers, cin = [], c
        for v in VGG16_CONFIG:
            if v == "M":
                if small and min(h, w) < 2:
                    layers.append(Identity())          # a pool here would give a 0x0 map
                else:
                    layers.append(MaxPool2D(2, 2))
                    h, w = h // 2, w // 2
                continue
            layers.append(Conv2D(cin, v, 3, padding=1))
            if self.batch_norm:
                layers.append(BatchNorm2D(v))
            layers.append(ReLU())
            cin = v
        self.to_channels_last = ToChannelsLast()
        self.features = Sequential(*layers)
        if small:
            self.avgpool = GlobalAvgPool2D()           # (N, 512)
            self.classifier = Linear(512, num_classes)
        else:
            self.avgpool = AdaptiveAvgPool2D(7)
            self.flatten = Flatten()                   # (N, 25088) in C, H, W order
            self.classifier = Sequential(
                Linear(512 * 7 * 7, 4096), ReLU(), Dropout(dropout),
                Linear(4096, 4096), ReLU(), Dropout(dropout),
                Linear(4096, num_classes))


def build(input_shape, num_classes, variant, **options) -> VGG16:
    return VGG16(input_shape, num_classes, small=(variant == "small"), **options)
