"""ConvNeXt-Tiny (Liu et al., 2022, "A ConvNet for the 2020s"), as in facebookresearch/ConvNeXt.

| part | layers | output (3x224x224) |
|---|---|---|
| downsample_layers.0 (stem) | Conv 4x4 stride 4 ("patchify"), LayerNorm | 96 x 56 x 56 |
| stages.0 | 3 ConvNeXt blocks, 96 | 96 x 56 x 56 |
| downsample_layers.1, stages.1 | LayerNorm, Conv 2x2 stride 2; 3 blocks, 192 | 192 x 28 x 28 |
| downsample_layers.2, stages.2 | LayerNorm, Conv 2x2 stride 2; 9 blocks, 384 | 384 x 14 x 14 |
| downsample_layers.3, stages.3 | LayerNorm, Conv 2x2 stride 2; 3 blocks, 768 | 768 x 7 x 7 |
| head | global average pool, LayerNorm, Linear 768 -> classes | classes |

A block is: 7x7 depthwise conv, LayerNorm (over channels, eps 1e-6), Linear C -> 4C, exact GELU,
Linear 4C -> C, layer scale gamma (initialised at 1e-6), [stochastic depth], residual add.
28,589,128 parameters at 1000 classes. Minimum input 32x32 (total stride 32).

The 'small' variant's stem is a 4x4 conv with stride 2 and padding 1 (total stride 16), so a
28x28 input goes 14 -> 7 -> 3 -> 1 and 32x32 goes 16 -> 8 -> 4 -> 2. Its weights have the
canonical shapes (same parameter count). Minimum input 16x16.
``depths``, ``dims``, ``drop_path_rate`` (default 0; ImageNet Tiny uses 0.1) and
``layer_scale_init`` are options.
"""
from __future__ import annotations

from convolutional.blocks import ConvNeXtBlock
from convolutional.conv import Conv2D
from convolutional.layout import Flatten, ToChannelsLast
from convolutional.norm import LayerNorm2D
from convolutional.pooling import AdaptiveAvgPool2D
from convolutional.architectures.base import Network
from vectorized.layers import Linear
from vectorized.module import Sequential

VARIANTS = {"canonical": "ConvNeXt-Tiny (official: 4x4 stride-4 patchify stem)",
            "small": "ConvNeXt-Tiny, 4x4 stride-2 stem (padding 1) for small inputs"}
MIN_SIZE = {"canonical": 32, "small": 16}


def auto_variant(height: int, width: int) -> str:
    return "small" if max(height, width) <= 64 else "canonical"


class ConvNeXtTiny(Network):
    """x: (N, C, H, W) -> (N, num_classes).

    Children named as the official model: downsample_layers.i and stages.i alternate, then
    norm and head (with a pool before the norm and a flatten after it, which hold no weights).
    """

    def __init__(self, input_shape=(3, 224, 224), num_classes: int = 1000, small: bool = False,
                 depths=(3, 3, 9, 3), dims=(96, 192, 384, 768), drop_path_rate: float = 0.0,
                 layer_scale_init: float = 1e-6):
        super().__init__(input_shape, num_classes)
        c = self.input_shape[0]
        self.to_channels_last = ToChannelsLast()
        stem = Conv2D(c, dims[0], 4, stride=2, padding=1) if small else Conv2D(c, dims[0], 4, stride=4)
        self.downsample_layers = Sequential(Sequential(stem, LayerNorm2D(dims[0], eps=1e-6)))
        for i in range(len(dims) - 1):
            self.downsample_layers.append(Sequential(LayerNorm2D(dims[i], eps=1e-6),
                                                     Conv2D(dims[i], dims[i + 1], 2, stride=2)))
        total, k = sum(depths), 0
        self.stages = Sequential()
        for depth, dim in zip(depths, dims):
            blocks = []
            for _ in range(depth):
                blocks.append(ConvNeXtBlock(dim, layer_scale_init=layer_scale_init,
                                            drop_path=drop_path_rate * k / max(total - 1, 1)))
                k += 1
            self.stages.append(Sequential(*blocks))
        self.pool = AdaptiveAvgPool2D(1)          # (N, 1, 1, C): the norm then works per "pixel"
        self.norm = LayerNorm2D(dims[-1], eps=1e-6)
        self.flatten = Flatten()                  # (N, C)
        self.head = Linear(dims[-1], num_classes)

    def forward(self, x):
        x = self.to_channels_last(x)
        for down, stage in zip(self.downsample_layers, self.stages):
            x = stage(down(x))
        return self.head(self.flatten(self.norm(self.pool(x))))

    def backward(self, grad_out):
        g = self.pool.backward(self.norm.backward(self.flatten.backward(self.head.backward(grad_out))))
        for down, stage in reversed(list(zip(self.downsample_layers, self.stages))):
            g = down.backward(stage.backward(g))
        return self.to_channels_last.backward(g)


def build(input_shape, num_classes, variant, **options) -> ConvNeXtTiny:
    return ConvNeXtTiny(input_shape, num_classes, small=(variant == "small"), **options)
