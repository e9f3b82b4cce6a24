"""Tier 3: convolutional layers, blocks and architectures on channels-last (N, H, W, C) activations.

Architectures take PyTorch's (N, C, H, W) and transpose once with :class:`ToChannelsLast`;
parameters keep PyTorch's layout and names. Elementwise layers (activations, Dropout,
Identity) are the vectorized tier's, re-exported here: they do not care about the layout.
"""
from convolutional.blocks import BasicBlock, ConvNeXtBlock, MBConv, conv_bn_act
from convolutional.conv import Conv2D, DepthwiseConv2D, PointwiseLinear
from convolutional.layout import Flatten, ToChannelsLast
from convolutional.norm import BatchNorm2D, LayerNorm2D
from convolutional.pooling import (
                                    AdaptiveAvgPool2D,
                                    AvgPool2D,
                                    GlobalAvgPool2D,
                                    MaxPool2D,
)
from convolutional.scaling import LayerScale, SqueezeExcite, StochasticDepth
from vectorized.activations import (
                                    ELU,
                                    GELU,
                                    LeakyReLU,
                                    ReLU,
                                    ReLU6,
                                    Sigmoid,
                                    SiLU,
                                    Softmax,
                                    Tanh,
                                    get_activation,
)
from vectorized.layers import Dropout, Identity, Linear
from vectorized.module import Module, Parameter, Sequential

__all__ = [
                                    "ELU",
                                    "GELU",
                                    "AdaptiveAvgPool2D",
                                    "AvgPool2D",
                                    "BasicBlock",
                                    "BatchNorm2D",
                                    "Conv2D",
                                    "ConvNeXtBlock",
                                    "DepthwiseConv2D",
                                    "Dropout",
                                    "Flatten",
                                    "GlobalAvgPool2D",
                                    "Identity",
                                    "LayerNorm2D",
                                    "LayerScale",
                                    "LeakyReLU",
                                    "Linear",
                                    "MBConv",
                                    "MaxPool2D",
                                    "Module",
                                    "Parameter",
                                    "PointwiseLinear",
                                    "ReLU",
                                    "ReLU6",
                                    "Sequential",
                                    "SiLU",
                                    "Sigmoid",
                                    "Softmax",
                                    "SqueezeExcite",
                                    "StochasticDepth",
                                    "Tanh",
                                    "ToChannelsLast",
                                    "conv_bn_act",
                                    "get_activation",
]
