"""Residual blocks: ResNet's BasicBlock, EfficientNet's MBConv and the ConvNeXt block.

Every block is y = shortcut(x) + branch(x), so its backward pass is the sum of the two paths:
dL/dx = shortcut.backward(g) + branch.backward(g). Children are named like torchvision's
(ResNet, EfficientNet) and the official ConvNeXt code, so state-dict keys map one to one.
All take and return channels-last (N, H, W, C).
"""
from __future__ import annotations

import numpy as np

from common.dispatch import accelerated
from common.errors import UserError
from convolutional.conv import Conv2D, DepthwiseConv2D, PointwiseLinear
from convolutional.norm import BatchNorm2D, LayerNorm2D
from convolutional.scaling import SqueezeExcite, StochasticDepth
from vectorized.activations import GELU, ReLU, get_activation
from vectorized.module import Module, Sequential, parameter


class BasicBlock(Module):
    """ResNet-18/34 block: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)).

    conv1 is 3×3 with ``stride``; shortcut = ``downsample`` (1×1 conv with stride + BN) when the
    stride or the channel count changes, else the identity. Convs before BN have no bias.
    (N, H, W, in_channels) -> (N, H/stride, W/stride, out_channels).
    """

    expansion = 1

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = Conv2D(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = BatchNorm2D(out_channels)
        self.relu = ReLU()
        self.conv2 = Conv2D(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = BatchNorm2D(out_channels)
        self.relu_out = ReLU()  # torchvision reuses `relu`; ours caches its input, so a second one
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = Sequential(Conv2D(in_channels, out_channels, 1, stride, bias=False),
                                         BatchNorm2D(out_channels))

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        out += shortcut
        return self.relu_out(out)

    def backward(self, grad_out):
        g = self.relu_out.backward(grad_out)
        dx = self.conv1.backward(self.bn1.backward(self.relu.backward(self.conv2.backward(self.bn2.backward(g)))))
        dx += g if self.downsample is None else self.downsample.backward(g)
        return dx


def conv_bn_act(in_channels, out_channels, kernel_size, stride=1, depthwise=False, activation=None,
                bn_eps=1e-5, bn_momentum=0.1) -> Sequential:
    """Sequential(conv, BN[, activation]) like torchvision's Conv2dNormActivation (keys 0, 1)."""
    padding = (kernel_size - 1) // 2
    if depthwise:
        conv = DepthwiseConv2D(in_channels, kernel_size, stride, padding, bias=False)
    else:
        conv = Conv2D(in_channels, out_channels, kernel_size, stride, padding, bias=False)
    layers = [conv, BatchNorm2D(out_channels, eps=bn_eps, momentum=bn_momentum)]
    if activation is not None:
        layers.append(get_activation(activation))
    return Sequential(*layers)


@accelerated("forward", "backward")
class MBConv(Module):
    """Mobile inverted bottleneck (MobileNetV2 / EfficientNet).

    block = [expand 1×1 conv+BN+act (skipped when expand_ratio == 1)] -> depthwise k×k conv
    with ``stride`` + BN + act -> [SqueezeExcite, squeeze = max(1, int(in_channels*se_ratio))]
    -> project 1×1 conv + BN (no activation). When stride == 1 and in == out the block is
    residual: y = x + stochastic_depth(block(x)). Keys follow torchvision: ``block.0.0.weight``...
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, expand_ratio: float,
                 se_ratio: float | None = None, activation: str = "relu6", drop_path: float = 0.0,
                 bn_eps: float = 1e-3, bn_momentum: float = 0.01):
        super().__init__()
        if stride not in (1, 2):
            raise UserError(f"MBConv stride must be 1 or 2, got {stride}")
        self.in_channels, self.out_channels, self.stride = int(in_channels), int(out_channels), int(stride)
        expanded = round(in_channels * expand_ratio)
        bn = {"bn_eps": bn_eps, "bn_momentum": bn_momentum}
        layers = []
        if expanded != in_channels:
            layers.append(conv_bn_act(in_channels, expanded, 1, activation=activation, **bn))
        layers.append(conv_bn_act(expanded, expanded, kernel_size, stride, depthwise=True, activation=activation, **bn))
        if se_ratio:
            layers.append(SqueezeExcite(expanded, max(1, int(in_channels * se_ratio)), activation=activation))
        layers.append(conv_bn_act(expanded, out_channels, 1, **bn))
        self.block = Sequential(*layers)
        self.use_res_connect = self.stride == 1 and self.in_channels == self.out_channels
        self.stochastic_depth = StochasticDepth(drop_path, "row")

    def forward(self, x):
        out = self.block(x)
        if self.use_res_connect:
            out = self.stochastic_depth(out)
            out += x
        return out

    def backward(self, grad_out):
        if not self.use_res_connect:
            return self.block.backward(grad_out)
        dx = self.block.backward(self.stochastic_depth.backward(grad_out))
        dx += grad_out
        return dx

    def extra_repr(self):
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"


@accelerated("forward", "backward")
class ConvNeXtBlock(Module):
    """ConvNeXt block (Liu et al. 2022), channels-last as in the official code.

    y = x + drop_path(gamma * pwconv2(GELU(pwconv1(norm(dwconv(x))))))
    dwconv: depthwise 7×7, padding 3, with bias; norm: LayerNorm2D(eps 1e-6) over channels;
    pwconv1/pwconv2: Linear C -> 4C -> C over the channel axis (weights (4C, C), (C, 4C));
    gamma: layer scale (C,) initialised at ``layer_scale_init`` (None when that is 0).
    """

    def __init__(self, dim: int, layer_scale_init: float = 1e-6, drop_path: float = 0.0):
        super().__init__()
        self.dim = int(dim)
        self.dwconv = DepthwiseConv2D(dim, 7, padding=3, bias=True)
        self.norm = LayerNorm2D(dim, eps=1e-6)
        self.pwconv1 = PointwiseLinear(dim, 4 * dim)
        self.act = GELU("none")
        self.pwconv2 = PointwiseLinear(4 * dim, dim)
        self.gamma = parameter(np.full(dim, float(layer_scale_init))) if layer_scale_init > 0 else None
        self.drop_path = StochasticDepth(drop_path, "row")

    def forward(self, x):
        branch = self.pwconv2(self.act(self.pwconv1(self.norm(self.dwconv(x)))))
        if self.gamma is not None:
            self.branch = branch
            branch = branch * self.gamma.data
        out = self.drop_path(branch)
        out += x
        return out

    def backward(self, grad_out):
        g = self.drop_path.backward(grad_out)
        if self.gamma is not None:
            self.gamma.grad += (g * self.branch).reshape(-1, self.dim).sum(axis=0)
            g = g * self.gamma.data
        dx = self.dwconv.backward(self.norm.backward(self.pwconv1.backward(self.act.backward(self.pwconv2.backward(g)))))
        dx += grad_out
        return dx

    def extra_repr(self):
        return f"{self.dim}"
