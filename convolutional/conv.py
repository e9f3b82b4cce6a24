"""Convolution layers on channels-last activations: Conv2D, DepthwiseConv2D, PointwiseLinear.

Parameters keep PyTorch's layout (``weight: (out, in/groups, kh, kw)``), so state dicts move
between NNOTT and PyTorch by name; only the activations are channels-last ``(N, H, W, C)``.
The arithmetic lives in :mod:`convolutional.kernels` (fast) and :mod:`convolutional.naive`
(the loop twins the tests compare against).
"""
from __future__ import annotations

import math

import numpy as np

from common.backend import xp
from common.errors import UserError
from convolutional import kernels
from convolutional.geometry import check_nhwc, output_size, pair, resolve_padding
from vectorized.init import canonical_scheme, init_weight
from vectorized.layers import Linear
from vectorized.module import Module, parameter


class Conv2D(Module):
    """2-D convolution.   x: (N, H, W, in_channels) -> (N, OH, OW, out_channels).

    OH = floor((H + pad_top + pad_bottom - dilation*(kh-1) - 1) / stride) + 1 (same for OW).
    ``padding``: int, (ph, pw), 'same' (stride 1) or 'valid'. ``groups`` splits the channels
    into independent convolutions; groups == in_channels == out_channels is a depthwise conv.
    ``init`` names a scheme of :mod:`vectorized.init` with fan_in = in/groups * kh * kw; the
    bias starts at zero.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, init: str = "kaiming"):
        super().__init__()
        self.in_channels, self.out_channels, self.groups = int(in_channels), int(out_channels), int(groups)
        if self.groups < 1 or self.in_channels % self.groups or self.out_channels % self.groups:
            raise UserError(f"Conv2D: in_channels {in_channels} and out_channels {out_channels} "
                            f"must both be divisible by groups {groups}")
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = pair(stride, "stride")
        self.dilation = pair(dilation, "dilation")
        if min(self.kernel_size + self.stride + self.dilation) < 1:
            raise UserError("Conv2D: kernel_size, stride and dilation must be at least 1")
        self.padding = padding
        self.pads = resolve_padding(padding, self.kernel_size, self.stride, self.dilation)
        self.init = canonical_scheme(init)
        kh, kw = self.kernel_size
        cg = self.in_channels // self.groups
        shape = (self.out_channels, cg, kh, kw)
        self.weight = parameter(init_weight(shape, self.init, fan_in=cg * kh * kw,
                                            fan_out=self.out_channels // self.groups * kh * kw))
        self.bias = parameter(np.zeros(self.out_channels)) if bias else None

    @property
    def depthwise(self) -> bool:
        return self.groups == self.in_channels == self.out_channels and self.groups > 1

    def output_hw(self, h: int, w: int) -> tuple[int, int]:
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        top, bottom, left, right = self.pads
        what = type(self).__name__
        return (output_size(h, kh, sh, top, bottom, dh, what), output_size(w, kw, sw, left, right, dw, what))

    def forward(self, x):
        check_nhwc(x, self.in_channels, repr(self).split("\n")[0])
        out_hw = self.output_hw(x.shape[1], x.shape[2])
        bias = None if self.bias is None else self.bias.data
        geometry = (self.stride, self.pads, self.dilation, out_hw)
        if self.depthwise:
            out, self.cache = kernels.depthwise_forward(x, self.weight.data, bias, *geometry)
        elif self.groups == 1:
            out, self.cache = kernels.conv2d_forward(x, self.weight.data, bias, *geometry)
        else:  # a grouped convolution is `groups` independent convolutions side by side
            cg, og = self.in_channels // self.groups, self.out_channels // self.groups
            outs, self.cache = [], []
            for g in range(self.groups):
                b = None if bias is None else bias[g * og:(g + 1) * og]
                o, cache = kernels.conv2d_forward(x[..., g * cg:(g + 1) * cg],
                                                  self.weight.data[g * og:(g + 1) * og], b, *geometry)
                outs.append(o)
                self.cache.append(cache)
            out = xp.concatenate(outs, axis=3)
        return out

    @property
    def can_skip_input_grad(self) -> bool:
        """Whether backward can leave out dL/dx (Module.backward_params): not for depthwise layers,
        whose kernel computes dx and dw in the same passes."""
        return not self.depthwise

    def backward(self, grad_out):
        if self.depthwise:
            dx, dw, db = kernels.depthwise_backward(grad_out, self.cache)
        elif self.groups == 1:
            dx, dw, db = kernels.conv2d_backward(grad_out, self.cache, self.input_grad)
        else:
            og = self.out_channels // self.groups
            parts = [kernels.conv2d_backward(xp.ascontiguousarray(grad_out[..., g * og:(g + 1) * og]), cache,
                                             self.input_grad)
                     for g, cache in enumerate(self.cache)]
            dx = xp.concatenate([p[0] for p in parts], axis=3) if self.input_grad else None
            dw = xp.concatenate([p[1] for p in parts], axis=0)
            db = None if self.bias is None else xp.concatenate([p[2] for p in parts], axis=0)
        self.weight.grad += dw
        if self.bias is not None:
            self.bias.grad += db
        return dx

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        s += f", padding={self.padding!r}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


class DepthwiseConv2D(Conv2D):
    """One k×k filter per channel (groups = channels).   (N, H, W, C) -> (N, OH, OW, C).

    weight: (C, 1, kh, kw) like PyTorch's ``Conv2d(C, C, k, groups=C)``. The fast path is k²
    fused multiply-adds on strided views (no matrix product: each channel is on its own).
    """

    def __init__(self, channels: int, kernel_size, stride=1, padding=0, dilation=1, bias: bool = True,
                 init: str = "kaiming"):
        super().__init__(channels, channels, kernel_size, stride, padding, dilation, groups=channels,
                         bias=bias, init=init)

    def extra_repr(self):
        return super().extra_repr().replace(f", groups={self.groups}", "")


class PointwiseLinear(Linear):
    """A Linear layer over the channel axis of channels-last input: (..., in) -> (..., out).

    On (N, H, W, C) this *is* a 1×1 convolution, as one matrix product on (N*H*W, C) rows.
    weight: (out_features, in_features) like ``nn.Linear`` (ConvNeXt's ``pwconv1``/``pwconv2``).
    """

    def forward(self, x):
        if x.shape[-1] != self.in_features:
            raise UserError(f"PointwiseLinear({self.in_features}, {self.out_features}) got input of shape "
                            f"{tuple(x.shape)}; expected (..., {self.in_features})")
        self.lead_shape = x.shape[:-1]
        y = super().forward(x.reshape(math.prod(self.lead_shape), self.in_features))
        return y.reshape(*self.lead_shape, self.out_features)

    def backward(self, grad_out):
        dx = super().backward(grad_out.reshape(-1, self.out_features))
        return None if dx is None else dx.reshape(*self.lead_shape, self.in_features)
