"""Plain-PyTorch twins of the seven NNOTT architectures (no torchvision needed).

Each twin uses the module names of the reference implementation, so its ``state_dict`` keys
are the ones NNOTT's models produce and :mod:`convolutional.interop` maps one-to-one:

* ``resnet18``, ``vgg16``, ``alexnet``: torchvision's names (``layer1.0.conv1.weight``,
  ``features.0.weight``, ``classifier.6.bias``);
* ``convnext_tiny``: the official facebookresearch/ConvNeXt names (``downsample_layers``,
  ``stages``, ``norm``, ``head``);
* ``efficientnet_lite0``: torchvision's EfficientNet layout (``features.1.0.block.0.0.weight``);
* ``lenet``, ``baseline``: NNOTT's own names.

``build_torch_model(name, input_shape, num_classes, variant, **options)`` mirrors
``convolutional.architectures.build_model`` for an *explicit* variant ('canonical' or 'small';
'gap' for BaselineCNN's global-average-pool variant, whose 'small' is its 'canonical').
The tests compare logits and gradients; ``scripts/benchmark.py`` times these twins.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


# ----------------------------------------------------------------------------- helpers
def _conv_out(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def _activation(name: str) -> nn.Module:
    return {"relu": nn.ReLU, "relu6": nn.ReLU6, "silu": nn.SiLU, "swish": nn.SiLU,
            "gelu": nn.GELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}[name]()


# ----------------------------------------------------------------------------- LeNet-5
class LeNet5(nn.Module):
    """Conv(6, 5x5, pad) - pool - Conv(16, 5x5) - pool - FC 120 - 84 - classes."""

    def __init__(self, input_shape=(1, 28, 28), num_classes=10, padding=2, activation="relu", pool="max"):
        super().__init__()
        c, h, w = input_shape
        pool_cls = nn.MaxPool2d if pool == "max" else nn.AvgPool2d
        self.features = nn.Sequential(
            nn.Conv2d(c, 6, 5, padding=padding), _activation(activation), pool_cls(2, 2),
            nn.Conv2d(6, 16, 5), _activation(activation), pool_cls(2, 2))
        h = _conv_out(_conv_out(h, 5, 1, padding) // 2, 5) // 2
        w = _conv_out(_conv_out(w, 5, 1, padding) // 2, 5) // 2
        self.classifier = nn.Sequential(
            nn.Linear(16 * h * w, 120), _activation(activation),
            nn.Linear(120, 84), _activation(activation), nn.Linear(84, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


# ----------------------------------------------------------------------------- BaselineCNN
class BaselineCNN(nn.Module):
    """canonical: conv 32 - conv 64 - pool - drop - conv 128 (LeakyReLU 0.1) - pool - drop, FC 256, FC.

    A map longer than 7 on a side is averaged down to 7 (``nn.AdaptiveAvgPool2d``), as ours is.
    """

    def __init__(self, input_shape=(1, 28, 28), num_classes=10, width=32, dropout=(0.15, 0.25, 0.5)):
        super().__init__()
        c, h, w = input_shape
        w1, w2, w3 = width, 2 * width, 4 * width
        p1, p2, p3 = dropout
        self.features = nn.Sequential(
            nn.Conv2d(c, w1, 3, padding=1), nn.BatchNorm2d(w1), nn.ReLU(),
            nn.Conv2d(w1, w2, 3, padding=1), nn.BatchNorm2d(w2), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(p1),
            nn.Conv2d(w2, w3, 3, padding=1), nn.BatchNorm2d(w3), nn.LeakyReLU(0.1), nn.MaxPool2d(2),
            nn.Dropout(p2))
        fh, fw = h // 4, w // 4
        self.avgpool = nn.AdaptiveAvgPool2d((7 if fh > 7 else None, 7 if fw > 7 else None))
        self.classifier = nn.Sequential(
            nn.Linear(w3 * min(fh, 7) * min(fw, 7), 256), nn.ReLU(), nn.Dropout(p3), nn.Linear(256, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class BaselineGAP(nn.Module):
    """gap: [conv3x3-BN-ReLU] 32 - pool - 64 - pool - 128, global average pool, Linear."""

    def __init__(self, input_shape=(1, 28, 28), num_classes=10, width=32):
        super().__init__()
        c = input_shape[0]
        w1, w2, w3 = width, 2 * width, 4 * width
        layers = []
        for i, (cin, cout) in enumerate(((c, w1), (w1, w2), (w2, w3))):
            layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
            if i < 2:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(w3, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x).mean((2, 3)))


# ----------------------------------------------------------------------------- AlexNet
class AlexNet(nn.Module):
    """torchvision's AlexNet; the 'small' variant has a 3x3 stride-1 stem and a 3x3 adaptive pool."""

    def __init__(self, input_shape=(3, 224, 224), num_classes=1000, small=False, dropout=0.5):
        super().__init__()
        c = input_shape[0]
        stem = nn.Conv2d(c, 64, 3, 1, 1) if small else nn.Conv2d(c, 64, 11, 4, 2)
        self.features = nn.Sequential(
            stem, nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2))
        side = 3 if small else 6
        self.avgpool = nn.AdaptiveAvgPool2d((side, side))
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(256 * side * side, 4096), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Linear(4096, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


# ----------------------------------------------------------------------------- VGG16
VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG16(nn.Module):
    """torchvision's vgg16 (canonical) or the CIFAR VGG16-BN with a Linear(512, classes) head (small).

    In the small variant a max-pool that would receive a 1x1 map is an Identity (28x28 inputs).
    """

    def __init__(self, input_shape=(3, 224, 224), num_classes=1000, small=False, batch_norm=None, dropout=0.5):
        super().__init__()
        c, h, w = input_shape
        batch_norm = small if batch_norm is None else batch_norm
        layers, cin = [], c
        for v in VGG16_CFG:
            if v == "M":
                if small and min(h, w) < 2:
                    layers.append(nn.Identity())
                else:
                    layers.append(nn.MaxPool2d(2, 2))
                    h, w = h // 2, w // 2
                continue
            layers.append(nn.Conv2d(cin, v, 3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(v))
            layers.append(nn.ReLU(inplace=True))
            cin = v
        self.features = nn.Sequential(*layers)
        self.small = small
        if small:
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Linear(512, num_classes)
        else:
            self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
            self.classifier = nn.Sequential(
                nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(dropout),
                nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(dropout), nn.Linear(4096, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


# ----------------------------------------------------------------------------- ResNet18
class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18(nn.Module):
    """torchvision's resnet18; 'small' = CIFAR stem (3x3 stride 1, no max-pool)."""

    def __init__(self, input_shape=(3, 224, 224), num_classes=1000, small=False):
        super().__init__()
        c = input_shape[0]
        if small:
            self.conv1 = nn.Conv2d(c, 64, 3, 1, 1, bias=False)
        else:
            self.conv1 = nn.Conv2d(c, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity() if small else nn.MaxPool2d(3, 2, 1)
        cin, layers = 64, []
        for i, (cout, stride) in enumerate(((64, 1), (128, 2), (256, 2), (512, 2))):
            setattr(self, f"layer{i + 1}", nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout)))
            cin = cout
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# ----------------------------------------------------------------------------- EfficientNet-Lite0
# (repeats, kernel, stride, expand ratio, out channels) per stage: EfficientNet-B0's table.
EFFICIENTNET_B0_STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
                          (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))


class SqueezeExcite(nn.Module):
    """torchvision's SqueezeExcitation: x * sigmoid(fc2(act(fc1(avgpool(x))))), 1x1 convs with bias."""

    def __init__(self, channels, squeeze_channels, activation="silu"):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1)
        self.activation = _activation(activation)
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc2(self.activation(self.fc1(self.avgpool(x)))))


def conv_bn_act(cin, cout, kernel, stride=1, groups=1, activation=None):
    """torchvision's Conv2dNormActivation: keys 0 (conv, no bias) and 1 (BN eps 1e-3, momentum 0.01)."""
    layers = [nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
              nn.BatchNorm2d(cout, eps=1e-3, momentum=0.01)]
    if activation:
        layers.append(_activation(activation))
    return nn.Sequential(*layers)


class MBConv(nn.Module):
    """torchvision's MBConv: block = [expand], depthwise, [SE], project; residual when shapes allow."""

    def __init__(self, cin, cout, kernel_size, stride, expand_ratio, se_ratio=None, activation="relu6"):
        super().__init__()
        mid = cin * expand_ratio
        layers = []
        if mid != cin:
            layers.append(conv_bn_act(cin, mid, 1, activation=activation))
        layers.append(conv_bn_act(mid, mid, kernel_size, stride, groups=mid, activation=activation))
        if se_ratio:
            layers.append(SqueezeExcite(mid, max(1, int(cin * se_ratio)), activation))
        layers.append(conv_bn_act(mid, cout, 1))
        self.block = nn.Sequential(*layers)
        self.use_res_connect = stride == 1 and cin == cout

    def forward(self, x):
        out = self.block(x)
        return out + x if self.use_res_connect else out


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 (no SE, ReLU6, BN eps 1e-3) in torchvision's EfficientNet layout.

    se=True (SiLU unless told otherwise) gives efficientnet_b0's blocks (and keys). 'small' = stride-1 stem.
    """

    def __init__(self, input_shape=(3, 224, 224), num_classes=1000, small=False, se=False,
                 activation=None, dropout=0.2):
        super().__init__()
        c = input_shape[0]
        activation = activation or ("silu" if se else "relu6")
        layers, cin = [conv_bn_act(c, 32, 3, 1 if small else 2, activation=activation)], 32
        for repeats, k, stride, expand, cout in EFFICIENTNET_B0_STAGES:
            blocks = []
            for i in range(repeats):
                blocks.append(MBConv(cin, cout, k, stride if i == 0 else 1, expand, 0.25 if se else None, activation))
                cin = cout
            layers.append(nn.Sequential(*blocks))
        layers.append(conv_bn_act(cin, 1280, 1, activation=activation))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(1280, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


# ----------------------------------------------------------------------------- ConvNeXt-Tiny
class LayerNormChannelsFirst(nn.Module):
    """LayerNorm over C at each (h, w) of an (N, C, H, W) tensor (the official ConvNeXt one)."""

    def __init__(self, channels, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x):
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class ConvNeXtBlock(nn.Module):
    """dw 7x7 - LN - Linear(C, 4C) - GELU - Linear(4C, C) - gamma - residual (eval: no drop path)."""

    def __init__(self, dim, layer_scale_init=1e-6):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(layer_scale_init * torch.ones(dim)) if layer_scale_init > 0 else None

    def forward(self, x):
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        if self.gamma is not None:
            y = self.gamma * y
        return x + y.permute(0, 3, 1, 2)


class ConvNeXtTiny(nn.Module):
    """Official ConvNeXt-T (depths 3-3-9-3, dims 96-768); 'small' = 4x4 stride-2 padding-1 stem."""

    def __init__(self, input_shape=(3, 224, 224), num_classes=1000, small=False,
                 depths=(3, 3, 9, 3), dims=(96, 192, 384, 768), layer_scale_init=1e-6):
        super().__init__()
        c = input_shape[0]
        stem_conv = nn.Conv2d(c, dims[0], 4, 2, 1) if small else nn.Conv2d(c, dims[0], 4, 4)
        self.downsample_layers = nn.ModuleList([nn.Sequential(stem_conv, LayerNormChannelsFirst(dims[0]))])
        for i in range(3):
            self.downsample_layers.append(nn.Sequential(LayerNormChannelsFirst(dims[i]),
                                                        nn.Conv2d(dims[i], dims[i + 1], 2, 2)))
        self.stages = nn.ModuleList(
            nn.Sequential(*[ConvNeXtBlock(dims[i], layer_scale_init) for _ in range(depths[i])]) for i in range(4))
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], num_classes)

    def forward(self, x):
        for down, stage in zip(self.downsample_layers, self.stages):
            x = stage(down(x))
        return self.head(self.norm(x.mean((-2, -1))))


# ----------------------------------------------------------------------------- registry
def build_torch_model(name, input_shape, num_classes=10, variant="small", **options) -> nn.Module:
    """The PyTorch twin of ``build_model(name, input_shape, num_classes, variant=variant, **options)``."""
    small = variant == "small"
    if name == "lenet":
        padding = options.pop("padding", 2 if small else 0)
        return LeNet5(input_shape, num_classes, padding=padding, **options)
    if name == "baseline":
        return (BaselineGAP if variant == "gap" else BaselineCNN)(input_shape, num_classes, **options)
    if name == "alexnet":
        return AlexNet(input_shape, num_classes, small=small, **options)
    if name == "vgg16":
        return VGG16(input_shape, num_classes, small=small, **options)
    if name == "resnet18":
        return ResNet18(input_shape, num_classes, small=small)
    if name == "efficientnet_lite0":
        return EfficientNetLite0(input_shape, num_classes, small=small, **options)
    if name == "convnext_tiny":
        return ConvNeXtTiny(input_shape, num_classes, small=small, **options)
    raise KeyError(name)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["build_torch_model", "count_parameters", "LeNet5", "BaselineCNN", "BaselineGAP", "AlexNet", "VGG16",
           "ResNet18", "EfficientNetLite0", "ConvNeXtTiny", "F"]
