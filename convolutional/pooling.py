"""Pooling on channels-last activations: MaxPool2D, AvgPool2D, GlobalAvgPool2D, AdaptiveAvgPool2D.

Like the convolutions, the fixed-window pools visit the k² kernel offsets, each a strided view
``window(x_pad, i, j)`` of shape (N, OH, OW, C) (see :mod:`convolutional.geometry`):

* max-pool keeps a running maximum and the offset index of the winner (``argmax``), so the
  backward pass sends each gradient to exactly one input, the *first* maximum, as PyTorch does;
* average-pool adds the k² views and divides by k² (padding counts as zeros, PyTorch's
  default ``count_include_pad=True``).

The loop twins are :func:`convolutional.naive.maxpool2d_naive` and friends.
"""
from __future__ import annotations

from common import backend
from common.backend import run_blocks, scratch, xp
from common.errors import UserError
from convolutional.geometry import (PIXEL_ITEM_BYTES, check_nhwc, copy_pixels, image_blocks, output_size, pad_nhwc,
                                   pair, unpad_nhwc, window)
from vectorized.module import Module


#: A ufunc over a strided view whose innermost runs hold at most this many values (channels-last
#: pixels of C values, every kw-th one) runs one short loop per run, several times slower than on a
#: contiguous array, while a copy of such a view is cheap (cheaper still pixel by pixel,
#: :func:`convolutional.geometry.copy_pixels`): a max-pool over maps of this few channels copies
#: each window view out to a contiguous plane before comparing it (LeNet's maps of 6 and 16),
#: and its backward pass on 6 channels writes each offset's gradient through a contiguous buffer.
SHORT_RUN = 16


def _pass_blocks(n, per_image_bytes):
    """Blocks of images for a pooling pass: a few cheap operations per value, so small inputs
    stay on the calling thread (common.backend.SMALL_PASS_BYTES)."""
    return image_blocks(n, per_image_bytes, small_bytes=backend.SMALL_PASS_BYTES)


class _Pool2D(Module):
    """Shared geometry of the k×k pools: kernel, stride (default = kernel), symmetric padding."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else pair(stride, "stride")
        ph, pw = pair(padding, "padding")
        if min(self.kernel_size + self.stride) < 1:
            raise UserError(f"{type(self).__name__}: kernel_size and stride must be at least 1")
        if 2 * ph > self.kernel_size[0] or 2 * pw > self.kernel_size[1]:
            raise UserError(f"{type(self).__name__}: padding {padding} must be at most half the kernel")
        self.padding = (ph, pw)
        self.pads = (ph, ph, pw, pw)

    def _geometry(self, x):
        check_nhwc(x, None, type(self).__name__)
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        top, bottom, left, right = self.pads
        what = type(self).__name__
        return (output_size(x.shape[1], kh, sh, top, bottom, 1, what),
                output_size(x.shape[2], kw, sw, left, right, 1, what))

    def _offsets(self):
        kh, kw = self.kernel_size
        return [(i, j) for i in range(kh) for j in range(kw)]

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2D(_Pool2D):
    """Window maximum.   (N, H, W, C) -> (N, OH, OW, C); padding is -inf (never the maximum).

    Both passes work on blocks of a few images shared out to every core
    (:func:`common.backend.run_blocks`), so the passes over a block stay in cache. The usual
    case, windows that tile the input (stride = kernel, no padding: VGG's 2x2), has its own
    faster pass: first the maximum of every kw neighbours along each row, then of every kh of
    those rows, the second step on whole rows of OW*C values at a time. On maps of few channels
    (``SHORT_RUN``: LeNet's) the general pass is faster still, with each window copied out to a
    contiguous plane first: every comparison then runs on contiguous arrays.

    A ReLU listed just before it runs after it in a ``Sequential`` (``commutes_with_relu``):
    the same numbers, with ReLU on the pooled values only.
    """

    commutes_with_relu = True

    def forward(self, x):
        oh, ow = self._geometry(x)
        self.x_shape, self.out_hw = x.shape, (oh, ow)
        n, c = x.shape[0], x.shape[3]
        out = xp.empty((n, oh, ow, c), dtype=x.dtype)
        arg = xp.zeros(out.shape, dtype=xp.uint8 if len(self._offsets()) < 256 else xp.int32)
        self.arg = arg
        short = c <= SHORT_RUN
        if self._tiles() and not short:
            run_blocks(_pass_blocks(n, x[0].nbytes), lambda n0, n1, buf: self._tile_max(x, out, arg, n0, n1, buf))
            return out
        x_pad = pad_nhwc(x, self.pads, value=-float("inf"))
        blocks = _pass_blocks(n, x_pad[0].nbytes)

        def work(n0, n1, buf):
            xb, ob, ab = x_pad[n0:n1], out[n0:n1], arg[n0:n1]
            shape = (blocks[0][1], oh, ow, c)
            better = scratch(buf, "better", shape, bool)[:n1 - n0]
            won = scratch(buf, "won", shape, arg.dtype)[:n1 - n0]
            plane = scratch(buf, "plane", shape, x.dtype)[:n1 - n0] if short else None
            copy_pixels(ob, window(xb, 0, 0, oh, ow, self.stride))
            for k, (i, j) in enumerate(self._offsets()[1:], start=1):
                view = window(xb, i, j, oh, ow, self.stride)
                if short:  # runs of C values: copied out to a contiguous plane, the ufuncs run faster there
                    view = copy_pixels(plane, view)
                xp.greater(view, ob, out=better)  # strict: on a tie the earlier offset keeps the gradient
                # arg = k where this offset is better: offsets only grow, so max(arg, better * k)
                # does it (a masked copy, copyto with where=, measured 6-14x slower)
                xp.maximum(ab, xp.multiply(better, arg.dtype.type(k), out=won), out=ab)
                xp.maximum(ob, view, out=ob)

        run_blocks(blocks, work)
        self.pad_shape = x_pad.shape
        return out

    def _tiles(self) -> bool:
        """Whether the windows tile the input: stride = kernel and no padding."""
        return self.stride == self.kernel_size and not any(self.pads)

    def _tile_max(self, x, out, arg, n0, n1, buf):
        """Images n0..n1-1 of the tiling case: maxima along rows, then down columns."""
        (kh, kw), (oh, ow) = self.kernel_size, self.out_hw
        c = x.shape[3]
        nb = n1 - n0
        xb = x[n0:n1, :oh * kh]
        # 1) along each input row: the maximum of every kw neighbours and which j won (the first on a tie)
        shape = (nb, oh * kh, ow, c)
        row_max = scratch(buf, "row_max", shape, x.dtype)
        row_arg = scratch(buf, "row_arg", shape, arg.dtype)
        better = scratch(buf, "better", shape, bool)
        best = xb[:, :, 0:ow * kw:kw]  # pixels j, j+kw, j+2kw... of every row
        for j in range(1, kw):
            view = xb[:, :, j:ow * kw:kw]
            if j == 1 and arg.itemsize == 1:  # arg is 1 exactly where offset 1 beats offset 0
                xp.greater(view, best, out=row_arg.view(bool))
            else:
                if j == 1:
                    row_arg[...] = 0
                xp.greater(view, best, out=better)
                xp.maximum(row_arg, xp.multiply(better, arg.dtype.type(j)), out=row_arg)
            best = xp.maximum(best, view, out=row_max)
        if kw == 1:
            row_arg[...] = 0
            row_max[...] = best
        # 2) down the columns: kh of those rows at a time, each a run of OW*C values
        row_max = row_max.reshape(nb, oh, kh, ow * c)
        row_arg = row_arg.reshape(nb, oh, kh, ow * c)
        ob, ab = out[n0:n1].reshape(nb, oh, ow * c), arg[n0:n1].reshape(nb, oh, ow * c)
        better = scratch(buf, "better_rows", ob.shape, bool)
        step = scratch(buf, "step", ob.shape, arg.dtype)
        best = row_max[:, :, 0]
        ab[...] = row_arg[:, :, 0]
        for i in range(1, kh):
            xp.greater(row_max[:, :, i], best, out=better)
            # where row i is better, arg becomes i*kw + its j: arg += better * (i*kw + j - arg)
            # (modular integer arithmetic makes the difference exact even when it is "negative")
            xp.add(row_arg[:, :, i], arg.dtype.type(i * kw), out=step)
            xp.subtract(step, ab, out=step)
            xp.multiply(step, better, out=step)
            ab += step
            best = xp.maximum(best, row_max[:, :, i], out=ob)
        if kh == 1:
            ob[...] = best

    def backward(self, grad_out):
        oh, ow = self.out_hw
        n = grad_out.shape[0]
        if self._tiles():  # every input is in at most one window: write, don't add
            h, w = self.x_shape[1:3]
            (kh, kw) = self.kernel_size
            cropped = h != oh * kh or w != ow * kw
            dx = (xp.zeros if cropped else xp.empty)(self.x_shape, dtype=grad_out.dtype)

            def write(n0, n1, buf):
                gb, ab, dxb = grad_out[n0:n1], self.arg[n0:n1], dx[n0:n1]
                won = scratch(buf, "won", ab.shape, bool)
                short = gb.shape[3] * gb.itemsize <= PIXEL_ITEM_BYTES  # copied a pixel at a time
                part = scratch(buf, "part", gb.shape, gb.dtype) if short else None
                for k, (i, j) in enumerate(self._offsets()):
                    view = window(dxb, i, j, oh, ow, self.stride)
                    xp.multiply(gb, xp.equal(ab, k, out=won), out=part if short else view)
                    if short:  # a ufunc writing runs of C values is slower than this copy
                        copy_pixels(view, part)

            run_blocks(_pass_blocks(n, dx[0].nbytes), write)
            return dx
        dx_pad = xp.zeros(self.pad_shape, dtype=grad_out.dtype)
        blocks = _pass_blocks(n, dx_pad[0].nbytes)

        def work(n0, n1, buf):
            gb, ab, dxb = grad_out[n0:n1], self.arg[n0:n1], dx_pad[n0:n1]
            tmp = scratch(buf, "tmp", (blocks[0][1], *grad_out.shape[1:]), grad_out.dtype)[:n1 - n0]
            for k, (i, j) in enumerate(self._offsets()):
                xp.multiply(gb, ab == k, out=tmp)  # the gradient of windows this offset won
                view = window(dxb, i, j, oh, ow, self.stride)
                view += tmp

        run_blocks(blocks, work)
        return unpad_nhwc(dx_pad, self.pads, self.x_shape)


class AvgPool2D(_Pool2D):
    """Window mean.   (N, H, W, C) -> (N, OH, OW, C); padded zeros count (count_include_pad=True)."""

    def forward(self, x):
        oh, ow = self._geometry(x)
        self.x_shape, self.out_hw = x.shape, (oh, ow)
        x_pad = pad_nhwc(x, self.pads)
        self.pad_shape = x_pad.shape
        out = xp.zeros((x.shape[0], oh, ow, x.shape[3]), dtype=x.dtype)
        for i, j in self._offsets():
            out += window(x_pad, i, j, oh, ow, self.stride)
        out *= 1.0 / (self.kernel_size[0] * self.kernel_size[1])
        return out

    def backward(self, grad_out):
        oh, ow = self.out_hw
        share = grad_out * (1.0 / (self.kernel_size[0] * self.kernel_size[1]))
        dx_pad = xp.zeros(self.pad_shape, dtype=grad_out.dtype)
        for i, j in self._offsets():
            view = window(dx_pad, i, j, oh, ow, self.stride)
            view += share
        return unpad_nhwc(dx_pad, self.pads, self.x_shape)


class GlobalAvgPool2D(Module):
    """Mean over H and W.   (N, H, W, C) -> (N, C), or (N, 1, 1, C) with ``keepdims=True``."""

    def __init__(self, keepdims: bool = False):
        super().__init__()
        self.keepdims = bool(keepdims)

    def forward(self, x):
        """Each image's mean is a row of 1/(H·W) times its (H·W, C) pixels: one batched product,
        3x faster than ``x.mean(axis=(1, 2))`` on BaselineCNN's 64x7x7x128 map (44 against 147 us)."""
        check_nhwc(x, None, "GlobalAvgPool2D")
        self.x_shape = n, h, w, c = x.shape
        if h * w == 1:
            out = xp.array(x.reshape(n, c))
        else:
            weights = xp.full((1, h * w), 1.0 / (h * w), dtype=x.dtype)
            out = xp.matmul(weights, xp.ascontiguousarray(x).reshape(n, h * w, c)).reshape(n, c)
        return out.reshape(n, 1, 1, c) if self.keepdims else out

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
