"""ResNet18 (He, Zhang, Ren, Sun, 2015) exactly as torchvision builds it.

| stage | layers | output (3x224x224) |
|---|---|---|
| stem | Conv 7x7 stride 2 pad 3, 64 (no bias), BN, ReLU, MaxPool 3 stride 2 pad 1 | 64 x 56 x 56 |
| layer1 | 2 BasicBlocks, 64 | 64 x 56 x 56 |
| layer2 | 2 BasicBlocks, 128, the first with stride 2 and a 1x1 conv + BN shortcut | 128 x 28 x 28 |
| layer3 | same, 256 | 256 x 14 x 14 |
| layer4 | same, 512 | 512 x 7 x 7 |
| head | global average pool, Linear 512 -> classes | classes |

A BasicBlock is conv3x3 - BN - ReLU - conv3x3 - BN, plus the shortcut, then ReLU.
11,689,512 parameters at 1000 classes. Minimum input 32x32 (total stride 32: the last stage
then sees a 1x1 map).

The 'small' variant is the CIFAR ResNet18 (kuangliu/pytorch-cifar): a 3x3 stride-1 stem and no
max-pool (total stride 8), so 32x32 ends at 4x4: 11,173,962 parameters at 3x32x32, 10 classes
(11,172,810 with one input channel). Minimum input 8x8.
"""
from __future__ import annotations

from convolutional.blocks import BasicBlock
from convolutional.conv import Conv2D
from convolutional.layout import ToChannelsLast
from convolutional.norm import BatchNorm2D
from convolutional.pooling import GlobalAvgPool2D, MaxPool2D
from convolutional.architectures.base import Network
from vectorized.activations import ReLU
from vectorized.layers import Identity, Linear
from vectorized.module import Sequential

VARIANTS = {"canonical": "ResNet18 (torchvision: 7x7 stride-2 stem + max-pool)",
            "small": "ResNet18, CIFAR stem (3x3 stride 1, no max-pool)"}
MIN_SIZE = {"canonical": 32, "small": 8}


def auto_variant(height: int, width: int) -> str:
    return "small" if max(height, width) <= 64 else "canonical"


class ResNet18(Network):
    """x: (N, C, H, W) -> (N, num_classes). Children named as torchvision's (conv1 ... layer4, fc)."""

    def __init__(self, input_shape=(3, 224, 224), num_classes: int = 1000, small: bool = False,
                 widths=(64, 128, 256, 512)):
        super().__init__(input_shape, num_classes)
        c = self.input_shape[0]
        self.to_channels_last = ToChannelsLast()
        if small:
            self.conv1 = Conv2D(c, widths[0], 3, stride=1, padding=1, bias=False)
        else:
            self.conv1 = Conv2D(c, widths[0], 7, stride=2, padding=3, bias=False)
        self.bn1 = BatchNorm2D(widths[0])
        self.relu = ReLU()
        self.maxpool = Identity() if small else MaxPool2D(3, stride=2, padding=1)
        cin = widths[0]
        for i, cout in enumerate(widths):
            stride = 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}", Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
            cin = cout
        self.avgpool = GlobalAvgPool2D()    # (N, 512)
        self.fc = Linear(cin, num_classes)


def build(input_shape, num_classes, variant, **options) -> ResNet18:
    return ResNet18(input_shape, num_classes, small=(variant == "small"), **options)
