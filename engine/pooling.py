"""Fast pooling: MaxPool2D on blocks of images shared out to every core, GlobalAvgPool2D as a product.

Max-pool keeps a running maximum and the offset index of the winner, block by block. Windows
that tile the input (stride = kernel, no padding: VGG's 2x2) have their own pass: the maximum of
every kw neighbours along each row, then of every kh of those rows, on whole rows of OW*C
values. On maps of few channels (``SHORT_RUN``) each window view is first copied out to a
contiguous plane, so every comparison runs on contiguous arrays.
"""
from __future__ import annotations

from common.backend import xp
from convolutional.geometry import pad_nhwc, unpad_nhwc, window
from convolutional.pooling import GlobalAvgPool2D, MaxPool2D
from engine import tuning
from engine.arrays import copy_pixels
from engine.parallel import image_blocks, run_blocks, scratch


def _pass_blocks(n, per_image_bytes):
    """Blocks of images for a pooling pass: small inputs stay on the calling thread."""
    return image_blocks(n, per_image_bytes, small_bytes=tuning.SMALL_PASS_BYTES)


def _offsets(layer):
    kh, kw = layer.kernel_size
    return [(i, j) for i in range(kh) for j in range(kw)]


def _reference_only(self, n) -> bool:
    """The options the blocks below do not cover (dilation, ceil_mode) and the empty batch run the
    layer's own code."""
    return n == 0 or self.dilation != (1, 1) or self.ceil_mode


def max_pool_forward(self, x):
    """MaxPool2D forward on blocks of images; ``self`` is the layer."""
    self.on_reference = _reference_only(self, x.shape[0])
    if self.on_reference:
        return MaxPool2D.forward.reference(self, x)
    oh, ow = self._geometry(x)
    self.x_shape, self.out_hw = x.shape, (oh, ow)
    n, c = x.shape[0], x.shape[3]
    out = xp.empty((n, oh, ow, c), dtype=x.dtype)
    arg = xp.zeros(out.shape, dtype=xp.uint8 if len(_offsets(self)) < 256 else xp.int32)
    self.arg = arg
    short = c <= tuning.SHORT_RUN
    if _tiles(self) and not short:
        run_blocks(_pass_blocks(n, x[0].nbytes), lambda n0, n1, buf: _tile_max(self, x, out, arg, n0, n1, buf))
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
        for k, (i, j) in enumerate(_offsets(self)[1:], start=1):
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


def max_pool_backward(self, grad_out):
    """MaxPool2D backward: each gradient goes to its window's first maximum."""
    if self.on_reference:
        return MaxPool2D.backward.reference(self, grad_out)
    oh, ow = self.out_hw
    n = grad_out.shape[0]
    if _tiles(self):  # every input is in at most one window: write, don't add
        h, w = self.x_shape[1:3]
        (kh, kw) = self.kernel_size
        cropped = h != oh * kh or w != ow * kw
        dx = (xp.zeros if cropped else xp.empty)(self.x_shape, dtype=grad_out.dtype)

        def write(n0, n1, buf):
            gb, ab, dxb = grad_out[n0:n1], self.arg[n0:n1], dx[n0:n1]
            won = scratch(buf, "won", ab.shape, bool)
            short = gb.shape[3] * gb.itemsize <= tuning.PIXEL_ITEM_BYTES  # copied a pixel at a time
            part = scratch(buf, "part", gb.shape, gb.dtype) if short else None
            for k, (i, j) in enumerate(_offsets(self)):
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
        for k, (i, j) in enumerate(_offsets(self)):
            xp.multiply(gb, ab == k, out=tmp)  # the gradient of windows this offset won
            view = window(dxb, i, j, oh, ow, self.stride)
            view += tmp

    run_blocks(blocks, work)
    return unpad_nhwc(dx_pad, self.pads, self.x_shape)


def global_avg_pool_forward(self, x):
    """Each image's mean is a row of 1/(H·W) times its (H·W, C) pixels: one batched product."""
    self.x_shape = n, h, w, c = x.shape
    if n == 0:
        return GlobalAvgPool2D.forward.reference(self, x)
    if h * w == 1:
        out = xp.array(x.reshape(n, c))
    else:
        weights = xp.full((1, h * w), 1.0 / (h * w), dtype=x.dtype)
        out = xp.matmul(weights, xp.ascontiguousarray(x).reshape(n, h * w, c)).reshape(n, c)
    return out.reshape(n, 1, 1, c) if self.keepdims else out


REPLACEMENTS = [(MaxPool2D, "forward", max_pool_forward), (MaxPool2D, "backward", max_pool_backward),
                (GlobalAvgPool2D, "forward", global_avg_pool_forward)]
