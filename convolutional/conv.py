"""Convolution layers on channels-last activations: Conv2D, DepthwiseConv2D, PointwiseLinear.

Parameters keep PyTorch's layout (``weight: (out, in/groups, kh, kw)``), so state dicts move
between NNOTT and PyTorch by name; only the activations are channels-last ``(N, H, W, C)``.
Each window of the padded input is a strided view (:func:`convolutional.geometry.windows`), so a
convolution is one sum over windows and kernel offsets (``einsum``). The loop twins in
:mod:`convolutional.naive` check it; the fast engine (``engine.convolution``) replaces it.
"""
from __future__ import annotations

import math

import numpy as np

from common.backend import xp
from common.dispatch import accelerated
from common.errors import UserError
from convolutional.geometry import (check_nhwc, output_size, pad_nhwc, pair, resolve_padding, unpad_nhwc, window,
                                   windows)
from vectorized.init import canonical_scheme, init_weight
from vectorized.layers import Linear
from vectorized.module import Module, parameter


PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def border_map(size: int, before: int, after: int, mode: str):
    """Input index of each of the ``before + size + after`` padded positions along one axis.

    reflect:   ... 2 1 | 0 1 2 ... s-1 | s-2 s-3 ...   (mirror; the edge itself is not repeated)
    replicate: ... 0 0 | 0 1 2 ... s-1 | s-1 s-1 ...
    circular:  ... s-2 s-1 | 0 1 ... s-1 | 0 1 ...     (wrap around)
    """
    i = xp.arange(-before, size + after)
    if mode == "reflect":
        i = xp.abs(i)
        return xp.where(i > size - 1, 2 * (size - 1) - i, i)
    if mode == "replicate":
        return xp.clip(i, 0, size - 1)
    return i % size  # circular


@accelerated("forward", "backward")
class Conv2D(Module):
    """2-D convolution.   x: (N, H, W, in_channels) -> (N, OH, OW, out_channels).

    OH = floor((H + pad_top + pad_bottom - dilation*(kh-1) - 1) / stride) + 1 (same for OW).
    ``padding``: int, (ph, pw), 'same' (stride 1), 'valid', or four numbers (left, right, top,
    bottom) in the order of PyTorch's ``F.pad``. ``padding_mode`` fills the border with zeros,
    or with the input itself: 'reflect' (mirrored, the edge not repeated), 'replicate' (the edge
    repeated) or 'circular' (wrapped around), as in PyTorch. ``groups`` splits the channels
    into independent convolutions; groups == in_channels == out_channels is a depthwise conv.
    ``init`` names a scheme of :mod:`vectorized.init` with fan_in = in/groups * kh * kw; the
    bias starts at zero.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, init: str = "kaiming",
                 padding_mode: str = "zeros"):
        super().__init__()
        if padding_mode not in PADDING_MODES:
            raise UserError(f"Conv2D: padding_mode must be one of {', '.join(PADDING_MODES)}, got {padding_mode!r}")
        self.padding_mode = padding_mode
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
        if isinstance(padding, (tuple, list)) and len(padding) == 4:   # F.pad's (left, right, top, bottom)
            left, right, top, bottom = (int(p) for p in padding)
            if min(left, right, top, bottom) < 0:
                raise UserError(f"Conv2D: padding must be non-negative, got {padding!r}")
            self.pads = (top, bottom, left, right)
        else:
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
        """out[n, y, x, o] = b[o] + sum over (i, j, c) of x_pad[n, y*s + i*d, x*s + j*d, c] * w[o, c, i, j],
        c running over the input channels of o's group."""
        check_nhwc(x, self.in_channels, repr(self).split("\n")[0])
        oh, ow = self.output_hw(x.shape[1], x.shape[2])
        x_pad = pad_nhwc(x, self.pads) if self.padding_mode == "zeros" else self._pad_by_mode(x)
        self.patches = self._grouped(windows(x_pad, self.kernel_size, (oh, ow), self.stride, self.dilation))
        self.x_shape, self.pad_shape = x.shape, x_pad.shape
        out = xp.einsum("nyxijgc,gocij->nyxgo", self.patches, self._grouped_weight(), optimize=True)
        out = out.reshape(x.shape[0], oh, ow, self.out_channels)
        return out if self.bias is None else out + self.bias.data

    def backward(self, grad_out):
        """dW = sum over (n, y, x) of dY x patch;  dX: each patch gives back dY @ W to the pixels it read."""
        n, oh, ow, _ = grad_out.shape
        g = grad_out.reshape(n, oh, ow, self.groups, self.out_channels // self.groups)    # (N, OH, OW, G, OC/G)
        self.weight.grad += xp.einsum("nyxgo,nyxijgc->gocij", g, self.patches,
                                      optimize=True).reshape(self.weight.shape)
        if self.bias is not None:
            self.bias.grad += grad_out.sum(axis=(0, 1, 2))
        dpatches = xp.einsum("nyxgo,gocij->nyxijgc", g, self._grouped_weight(), optimize=True)
        dx_pad = xp.zeros(self.pad_shape, dtype=grad_out.dtype)
        kh, kw = self.kernel_size
        for i in range(kh):
            for j in range(kw):  # the pixels kernel offset (i, j) read, for every output position
                view = window(dx_pad, i, j, oh, ow, self.stride, self.dilation)
                view += dpatches[:, :, :, i, j].reshape(n, oh, ow, self.in_channels)
        if self.padding_mode != "zeros":
            return self._unpad_by_mode(dx_pad)
        return unpad_nhwc(dx_pad, self.pads, self.x_shape)

    def _border_maps(self, h: int, w: int):
        """For 'reflect', 'replicate' and 'circular': which input row feeds each padded row, and
        which input column each padded column (two integer vectors of lengths Hp and Wp)."""
        top, bottom, left, right = self.pads
        if self.padding_mode == "reflect" and (max(top, bottom) >= h or max(left, right) >= w):
            raise UserError(f"Conv2D: reflect padding {self.pads} needs an input larger than the padding, "
                            f"got {h}x{w}")
        if self.padding_mode == "circular" and (max(top, bottom) > h or max(left, right) > w):
            raise UserError(f"Conv2D: circular padding {self.pads} can wrap at most once, got {h}x{w}")
        return border_map(h, top, bottom, self.padding_mode), border_map(w, left, right, self.padding_mode)

    def _pad_by_mode(self, x):
        """x_pad[n, a, b, c] = x[n, rows[a], cols[b], c]: the border copies pixels of the input."""
        rows, cols = self._border_maps(x.shape[1], x.shape[2])
        return x[:, rows][:, :, cols]

    def _unpad_by_mode(self, dx_pad):
        """The transpose of :meth:`_pad_by_mode`: every padded pixel's gradient is added back to the
        input pixel it copies. Padding is x_pad = R x S^T with one-hot R (Hp, H) and S (Wp, W), so
        dX = R^T dX_pad S."""
        _, h, w, _ = self.x_shape
        rows, cols = self._border_maps(h, w)
        r = (rows[:, None] == xp.arange(h)).astype(dx_pad.dtype)           # (Hp, H) one-hot
        s = (cols[:, None] == xp.arange(w)).astype(dx_pad.dtype)           # (Wp, W) one-hot
        return xp.einsum("nabc,ah,bw->nhwc", dx_pad, r, s, optimize=True)

    def _grouped(self, patches):
        """Windows (N, OH, OW, kh, kw, C) -> (N, OH, OW, kh, kw, G, C/G): channels split by group."""
        return patches.reshape(*patches.shape[:5], self.groups, self.in_channels // self.groups)

    def _grouped_weight(self):
        """weight (OC, C/G, kh, kw) -> (G, OC/G, C/G, kh, kw)."""
        oc, cg, kh, kw = self.weight.shape
        return self.weight.data.reshape(self.groups, oc // self.groups, cg, kh, kw)

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        s += f", padding={self.padding!r}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode!r}"
        return s


class DepthwiseConv2D(Conv2D):
    """One k×k filter per channel (groups = channels).   (N, H, W, C) -> (N, OH, OW, C).

    weight: (C, 1, kh, kw) like PyTorch's ``Conv2d(C, C, k, groups=C)``: each channel is
    convolved with its own filter, and no channel mixes with another.
    """

    def __init__(self, channels: int, kernel_size, stride=1, padding=0, dilation=1, bias: bool = True,
                 init: str = "kaiming", padding_mode: str = "zeros"):
        super().__init__(channels, channels, kernel_size, stride, padding, dilation, groups=channels,
                         bias=bias, init=init, padding_mode=padding_mode)

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
