"""EfficientNet-Lite0 (Tan and Le, 2019; the TF "lite" family, 2020).

EfficientNet-B0's stages of MBConv blocks (inverted residuals: 1x1 expand, kxk depthwise,
1x1 project, residual when shape allows), made edge-friendly: **no squeeze-and-excite, ReLU6
instead of swish**, BatchNorm eps 1e-3 (momentum 0.01 in PyTorch's convention = TF's 0.99).

| stage | repeats | kernel | stride | expand | channels |
|---|---|---|---|---|---|
| stem: Conv 3x3 stride 2, BN, ReLU6 | 1 | 3 | 2 | - | 32 |
| 1 | 1 | 3 | 1 | 1 | 16 |
| 2 | 2 | 3 | 2 | 6 | 24 |
| 3 | 2 | 5 | 2 | 6 | 40 |
| 4 | 3 | 3 | 2 | 6 | 80 |
| 5 | 3 | 5 | 1 | 6 | 112 |
| 6 | 4 | 5 | 2 | 6 | 192 |
| 7 | 1 | 3 | 1 | 6 | 320 |
| head: Conv 1x1, BN, ReLU6; global average pool; Dropout 0.2; Linear | | | | | 1280 |

4,652,008 parameters at 1000 classes (3,383,818 at 10). Minimum input 32x32 (total stride 32).

Options: ``se=True`` adds B0's squeeze-and-excite (hidden size 0.25 x the block's *input*
channels) and, unless ``activation`` says otherwise, B0's swish (SiLU): **"Lite0 blocks + SE
(B0-style)"**, EfficientNet-B0's 5,288,548 parameters; the model's label says so, and
the state-dict keys are torchvision ``efficientnet_b0``'s.
``drop_path_rate`` (default 0; the ImageNet recipe uses 0.2) sets stochastic depth, growing
linearly with block index.

The 'small' variant has a stride-1 stem (total stride 16), for 28x28 and 32x32 inputs;
minimum 16x16.
"""
from __future__ import annotations

from convolutional.blocks import MBConv, conv_bn_act
from convolutional.layout import ToChannelsLast
from convolutional.pooling import GlobalAvgPool2D
from convolutional.architectures.base import Network
from vectorized.layers import Dropout, Linear
from vectorized.module import Sequential

#: (repeats, kernel, stride, expand ratio, out channels) per stage: EfficientNet-B0's table.
STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
          (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
BN = dict(bn_eps=1e-3, bn_momentum=0.01)

VARIANTS = {"canonical": "EfficientNet-Lite0 (no SE, ReLU6), stride-2 stem",
            "small": "EfficientNet-Lite0 (no SE, ReLU6), stride-1 stem for small inputs"}
MIN_SIZE = {"canonical": 32, "small": 16}


def auto_variant(height: int, width: int) -> str:
    return "small" if max(height, width) <= 64 else "canonical"


class EfficientNetLite0(Network):
    """x: (N, C, H, W) -> (N, num_classes).

    Laid out like torchvision's EfficientNet: ``features.0`` stem, ``features.1-7`` the stages
    (lists of MBConv), ``features.8`` head conv; ``avgpool``; ``classifier`` = Dropout, Linear.
    With ``se=True`` (SiLU) the state dict has torchvision ``efficientnet_b0``'s keys.
    """

    def __init__(self, input_shape=(3, 224, 224), num_classes: int = 1000, small: bool = False,
                 se: bool = False, activation: str | None = None, dropout: float = 0.2,
                 drop_path_rate: float = 0.0):
        super().__init__(input_shape, num_classes)
        c = self.input_shape[0]
        activation = activation or ("silu" if se else "relu6")
        self.se, self.activation = bool(se), activation
        total = sum(stage[0] for stage in STAGES)
        layers = [conv_bn_act(c, 32, 3, stride=1 if small else 2, activation=activation, **BN)]   # stem
        cin, k = 32, 0
        for repeats, kernel, stride, expand, cout in STAGES:
            blocks = []
            for i in range(repeats):
                blocks.append(MBConv(cin, cout, kernel, stride if i == 0 else 1, expand,
                                     se_ratio=0.25 if se else None, activation=activation,
                                     drop_path=drop_path_rate * k / total, **BN))
                cin, k = cout, k + 1
            layers.append(Sequential(*blocks))
        layers.append(conv_bn_act(cin, 1280, 1, activation=activation, **BN))                  # head
        self.to_channels_last = ToChannelsLast()
        self.features = Sequential(*layers)
        self.avgpool = GlobalAvgPool2D()     # (N, 1280)
        self.classifier = Sequential(Dropout(dropout), Linear(1280, num_classes))


def build(input_shape, num_classes, variant, **options) -> EfficientNetLite0:
    return EfficientNetLite0(input_shape, num_classes, small=(variant == "small"), **options)


def label(model: EfficientNetLite0) -> str:
    """The variant label, saying plainly when the blocks are not canonical Lite0."""
    if model.se:
        name = f"Lite0 blocks + SE (B0-style, {model.activation})"
    elif model.activation != "relu6":
        name = f"EfficientNet-Lite0 blocks with {model.activation} instead of ReLU6"
    else:
        name = "EfficientNet-Lite0 (no SE, ReLU6)"
    return name + (", stride-1 stem for small inputs" if model.variant == "small" else ", stride-2 stem")
