"""LeNet-5 (LeCun et al., 1998), in its modern form: ReLU, max-pooling, a full C3 layer.

| layer | output (28x28 input, padding 2) | params |
|---|---|---|
| C1 Conv 5x5, 6 maps, padding 2 | 6 x 28 x 28 | 156 |
| S2 MaxPool 2 | 6 x 14 x 14 | 0 |
| C3 Conv 5x5, 16 maps | 16 x 10 x 10 | 2,416 |
| S4 MaxPool 2 | 16 x 5 x 5 | 0 |
| F5 Linear 400 -> 120 | 120 | 48,120 |
| F6 Linear 120 -> 84 | 84 | 10,164 |
| output Linear 84 -> 10 | 10 | 850 |

61,706 parameters. The 'canonical' variant is LeCun's geometry: a 32x32 input and no padding;
the 'small' variant pads C1 by 2, so a 28x28 MNIST digit gives the same 16x5x5 map. Other
sizes work too: F5's input grows with the image. ``activation='tanh', pool='avg'`` gives the
1998 flavour (without the partial C3 table and the RBF output).
"""
from __future__ import annotations

from convolutional.conv import Conv2D
from convolutional.layout import Flatten, ToChannelsLast
from convolutional.pooling import AvgPool2D, MaxPool2D
from convolutional.architectures.base import Network, conv_out
from vectorized.activations import get_activation
from vectorized.layers import Linear
from vectorized.module import Sequential

VARIANTS = {"canonical": "LeNet-5, 32x32 geometry (C1 unpadded)",
            "small": "LeNet-5, C1 padded by 2 (28x28 MNIST gives the 32x32 maps)"}
MIN_SIZE = {"canonical": 16, "small": 12}


def auto_variant(height: int, width: int) -> str:
    return "small" if max(height, width) < 32 else "canonical"


class LeNet5(Network):
    """x: (N, C, H, W) -> (N, num_classes). Children: features, flatten, classifier."""

    def __init__(self, input_shape=(1, 28, 28), num_classes: int = 10, padding: int = 2,
                 activation: str = "relu", pool: str = "max"):
        super().__init__(input_shape, num_classes)
        c, h, w = self.input_shape
        pool_cls = {"max": MaxPool2D, "avg": AvgPool2D}[pool]
        self.to_channels_last = ToChannelsLast()
        self.features = Sequential(
            Conv2D(c, 6, 5, padding=padding), get_activation(activation), pool_cls(2, 2),   # C1, S2
            Conv2D(6, 16, 5), get_activation(activation), pool_cls(2, 2))                   # C3, S4
        fh = conv_out(conv_out(conv_out(h, 5, 1, padding), 2, 2), 5) // 2
        fw = conv_out(conv_out(conv_out(w, 5, 1, padding), 2, 2), 5) // 2
        self.flatten = Flatten()                                                            # (N, 16*fh*fw)
        self.classifier = Sequential(
            Linear(16 * fh * fw, 120), get_activation(activation),                          # F5
            Linear(120, 84), get_activation(activation),                                    # F6
            Linear(84, num_classes))


def build(input_shape, num_classes, variant, **options) -> LeNet5:
    options.setdefault("padding", 2 if variant == "small" else 0)
    return LeNet5(input_shape, num_classes, **options)
