"""Pooling on channels-last activations: MaxPool2D, AvgPool2D, GlobalAvgPool2D, AdaptiveAvgPool2D.

Like the convolutions, the fixed-window pools look at the k² kernel offsets, each a strided view
``window(x_pad, i, j)`` of shape (N, OH, OW, C) (see :mod:`convolutional.geometry`):

* max-pool keeps the maximum and which offset won (``argmax``), so the backward pass sends each
  gradient to exactly one input, the *first* maximum, as PyTorch does;
* average-pool adds the k² views and divides by the window's divisor (k², padding counting as
  zeros, with PyTorch's default ``count_include_pad=True``).

Options as in PyTorch: ``dilation`` (max-pool), ``ceil_mode`` (both) and ``count_include_pad``
(average). A ``ceil_mode`` window may reach past the padded input; the extra rows and columns are
padded like the rest (-inf for max, zeros that do not count for average).

The loop twins are :func:`convolutional.naive.maxpool2d_naive` and friends.
"""
from __future__ import annotations

from common.backend import xp
from common.dispatch import accelerated
from common.errors import UserError
from convolutional.geometry import check_nhwc, output_size, pad_nhwc, pair, unpad_nhwc, window, windows
from vectorized.module import Module


def pooled_size(size: int, kernel: int, stride: int, pad: int, dilation: int, ceil_mode: bool, what: str) -> int:
    """floor (or ceil) of (size + 2 pad - d(k-1) - 1) / s, plus 1 (PyTorch's rule).

    With ``ceil_mode`` a last, partial window is kept, but only if it starts inside the input or
    its left padding (a window that would start in the right padding is dropped)."""
    span = dilation * (kernel - 1) + 1
    padded = size + 2 * pad
    if padded < span:
        raise UserError(f"{what}: input size {size} (padded {padded}) is smaller than the "
                        f"kernel's reach {span}; use a larger input or a smaller kernel")
    out = (padded - span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


class _Pool2D(Module):
    """Shared geometry of the k×k pools: kernel, stride (default = kernel), symmetric padding,
    dilation (the gap between a window's taps) and ``ceil_mode`` (keep a last partial window)."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False):
        super().__init__()
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else pair(stride, "stride")
        self.dilation = pair(dilation, "dilation")
        self.ceil_mode = bool(ceil_mode)
        ph, pw = pair(padding, "padding")
        if min(self.kernel_size + self.stride + self.dilation) < 1:
            raise UserError(f"{type(self).__name__}: kernel_size, stride and dilation must be at least 1")
        if 2 * ph > self.kernel_size[0] or 2 * pw > self.kernel_size[1]:
            raise UserError(f"{type(self).__name__}: padding {padding} must be at most half the kernel")
        self.padding = (ph, pw)
        self.pads = (ph, ph, pw, pw)

    def _geometry(self, x):
        """(OH, OW) for input x, and ``self.pads`` = (top, bottom, left, right) with the extra rows
        and columns that a ``ceil_mode`` window reaches past the padded input."""
        check_nhwc(x, None, type(self).__name__)
        what = type(self).__name__
        (kh, kw), (sh, sw), (dh, dw), (ph, pw) = self.kernel_size, self.stride, self.dilation, self.padding
        h, w = x.shape[1], x.shape[2]
        oh = pooled_size(h, kh, sh, ph, dh, self.ceil_mode, what)
        ow = pooled_size(w, kw, sw, pw, dw, self.ceil_mode, what)
        extra_h = max(0, (oh - 1) * sh + dh * (kh - 1) + 1 - (h + 2 * ph))
        extra_w = max(0, (ow - 1) * sw + dw * (kw - 1) + 1 - (w + 2 * pw))
        self.pads = (ph, ph + extra_h, pw, pw + extra_w)
        return oh, ow

    def _offsets(self):
        kh, kw = self.kernel_size
        return [(i, j) for i in range(kh) for j in range(kw)]

    def extra_repr(self):
        s = f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        return s + (", ceil_mode=True" if self.ceil_mode else "")


@accelerated("forward", "backward")
class MaxPool2D(_Pool2D):
    """Window maximum.   (N, H, W, C) -> (N, OH, OW, C); padding is -inf (never the maximum).

    forward:  out[n, y, x, c] = max over (i, j) of x_pad[n, y*s + i*d, x*s + j*d, c]
    backward: each dL/dout goes to the input that won its window, the *first* maximum on a tie
              (PyTorch's rule); every other input of the window gets 0.
    """

    def forward(self, x):
        oh, ow = self._geometry(x)
        x_pad = pad_nhwc(x, self.pads, value=-float("inf"))
        patches = windows(x_pad, self.kernel_size, (oh, ow), self.stride, self.dilation)  # (N, OH, OW, kh, kw, C)
        n, c = x.shape[0], x.shape[3]
        patches = patches.reshape(n, oh, ow, len(self._offsets()), c)          # (N, OH, OW, kh*kw, C)
        self.arg = patches.argmax(axis=3)                                       # which offset won
        self.x_shape, self.pad_shape, self.out_hw = x.shape, x_pad.shape, (oh, ow)
        return patches.max(axis=3)

    def backward(self, grad_out):
        oh, ow = self.out_hw
        dx_pad = xp.zeros(self.pad_shape, dtype=grad_out.dtype)
        for k, (i, j) in enumerate(self._offsets()):
            view = window(dx_pad, i, j, oh, ow, self.stride, self.dilation)
            view += grad_out * (self.arg == k)                                  # the windows offset k won
        return unpad_nhwc(dx_pad, self.pads, self.x_shape)


class AvgPool2D(_Pool2D):
    """Window mean.   (N, H, W, C) -> (N, OH, OW, C).

    Each window's sum is divided by its *divisor*: with ``count_include_pad=True`` (PyTorch's
    default) the window's size clipped to the padded input (so k² except for a ``ceil_mode``
    window hanging over the edge); with ``False`` the number of real input pixels it covers.
    The divisor is a product of a row count and a column count, an (OH, OW) map.
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
                 count_include_pad: bool = True):
        super().__init__(kernel_size, stride, padding, 1, ceil_mode)
        self.count_include_pad = bool(count_include_pad)

    def _counts(self, size, out, kernel, stride, pad):
        """For each of the ``out`` windows along one axis: how many of its taps it divides by."""
        start = xp.arange(out) * stride - pad                    # first tap, in input coordinates
        end = xp.minimum(start + kernel, size + pad)             # clipped to the padded input
        if not self.count_include_pad:
            start, end = xp.maximum(start, 0), xp.minimum(end, size)
        return (end - start).astype(float)

    def forward(self, x):
        oh, ow = self._geometry(x)
        self.x_shape, self.out_hw = x.shape, (oh, ow)
        x_pad = pad_nhwc(x, self.pads)
        self.pad_shape = x_pad.shape
        out = xp.zeros((x.shape[0], oh, ow, x.shape[3]), dtype=x.dtype)
        for i, j in self._offsets():
            out += window(x_pad, i, j, oh, ow, self.stride)
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        rows = self._counts(x.shape[1], oh, kh, sh, ph)
        cols = self._counts(x.shape[2], ow, kw, sw, pw)
        self.inv_divisor = (1.0 / xp.outer(rows, cols)).astype(x.dtype)[:, :, None]   # (OH, OW, 1)
        out *= self.inv_divisor
        return out

    def backward(self, grad_out):
        oh, ow = self.out_hw
        share = grad_out * self.inv_divisor
        dx_pad = xp.zeros(self.pad_shape, dtype=grad_out.dtype)
        for i, j in self._offsets():
            view = window(dx_pad, i, j, oh, ow, self.stride)
            view += share
        return unpad_nhwc(dx_pad, self.pads, self.x_shape)

    def extra_repr(self):
        return super().extra_repr() + ("" if self.count_include_pad else ", count_include_pad=False")


@accelerated("forward")
class GlobalAvgPool2D(Module):
    """Mean over H and W.   (N, H, W, C) -> (N, C), or (N, 1, 1, C) with ``keepdims=True``."""

    def __init__(self, keepdims: bool = False):
        super().__init__()
        self.keepdims = bool(keepdims)

    def forward(self, x):
        check_nhwc(x, None, "GlobalAvgPool2D")
        self.x_shape = x.shape
        return x.mean(axis=(1, 2), keepdims=self.keepdims)

    def backward(self, grad_out):
        n, h, w, c = self.x_shape
        dx = xp.empty(self.x_shape, dtype=grad_out.dtype)
        dx[...] = (grad_out * (1.0 / (h * w))).reshape(n, 1, 1, c)
        return dx

    def extra_repr(self):
        return "keepdims=True" if self.keepdims else ""


class AdaptiveAvgPool2D(Module):
    """Average to a fixed grid.   (N, H, W, C) -> (N, oh, ow, C).

    Output cell (i, j) averages input rows floor(i*H/oh) .. ceil((i+1)*H/oh) - 1 and the same
    for columns (PyTorch's rule: cells may overlap or, for H < oh, repeat a row). ``None`` in
    ``output_size`` keeps that input size. When oh divides H (and ow divides W) the cells are
    equal tiles and one reshape-mean does it.
    """

    def __init__(self, output_size):
        super().__init__()
        if isinstance(output_size, (tuple, list)):
            self.output_size = tuple(None if s is None else int(s) for s in output_size)
        else:
            self.output_size = (int(output_size), int(output_size))
        if len(self.output_size) != 2 or any(s is not None and s < 1 for s in self.output_size):
            raise UserError(f"AdaptiveAvgPool2D: output_size must be positive, got {output_size!r}")

    def _cells(self, h, w):
        oh = self.output_size[0] or h
        ow = self.output_size[1] or w
        rows = [((i * h) // oh, -((-(i + 1) * h) // oh)) for i in range(oh)]
        cols = [((j * w) // ow, -((-(j + 1) * w) // ow)) for j in range(ow)]
        return oh, ow, rows, cols

    def forward(self, x):
        check_nhwc(x, None, "AdaptiveAvgPool2D")
        n, h, w, c = self.x_shape = x.shape
        oh, ow, rows, cols = self._cells(h, w)
        if h % oh == 0 and w % ow == 0:
            return x.reshape(n, oh, h // oh, ow, w // ow, c).mean(axis=(2, 4))
        out = xp.empty((n, oh, ow, c), dtype=x.dtype)
        for i, (y0, y1) in enumerate(rows):
            for j, (x0, x1) in enumerate(cols):
                out[:, i, j, :] = x[:, y0:y1, x0:x1, :].mean(axis=(1, 2))
        return out

    def backward(self, grad_out):
        n, h, w, c = self.x_shape
        oh, ow, rows, cols = self._cells(h, w)
        if h % oh == 0 and w % ow == 0:
            kh, kw = h // oh, w // ow
            dx = xp.empty((n, oh, kh, ow, kw, c), dtype=grad_out.dtype)
            dx[...] = (grad_out * (1.0 / (kh * kw))).reshape(n, oh, 1, ow, 1, c)
            return dx.reshape(self.x_shape)
        dx = xp.zeros(self.x_shape, dtype=grad_out.dtype)
        for i, (y0, y1) in enumerate(rows):
            for j, (x0, x1) in enumerate(cols):
                region = dx[:, y0:y1, x0:x1, :]
                region += (grad_out[:, i, j, :] * (1.0 / ((y1 - y0) * (x1 - x0)))).reshape(n, 1, 1, c)
        return dx

    def extra_repr(self):
        return f"output_size={self.output_size}"
