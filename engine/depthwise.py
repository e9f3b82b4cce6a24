"""Depthwise convolution (one k×k filter per channel): k² multiply-adds on strided views.

Each channel has its own filter, so there is no matrix product: out is the sum over the k²
offsets of ``window(x_pad, i, j) * w[i, j]``, with w[i, j] a (C,) vector. On the CPU that sum is
one ``einsum`` over the windows view (``DEPTHWISE_EINSUM``); blocks of a few images
(``DEPTHWISE_BLOCK_BYTES``) are shared out to every core. With stride 1 (``DEPTHWISE_ROWS``) the
einsum runs over whole output rows instead of pixels: the OW·C values an offset (i, j) reads
for one output row are one contiguous run of the padded input, so the view
``[n, y, i, j, q] = x_pad[n, y + i·d, j·d + q // C, q % C]`` (q < OW·C) against w[i, j] repeated
OW times gives NumPy's inner loop OW·C values instead of C.

Backward: dw[i, j] = sum over (n, y, x) of window(x_pad, i, j) * dy. dX: with stride 1, a
depthwise convolution of dY (padded by d(k-1) - pad) with the kernel flipped in space; with a
stride, dy * w[i, j] is added back into each window of dx.

On small maps a channel's whole convolution is one matrix (:func:`depthwise_matrices`): output
pixel q is the sum over input pixels p of x[p]·T[p, q], with T[p, q] the weight of the tap that
joins them (0 where none does). For a 4×4 map and a 5×5 kernel nearly every input pixel reaches
every output pixel, so T (16 × 16) is mostly weights, and the layer becomes one batched product
over the channels: (C, N, H·W) @ (C, H·W, OH·OW). On wider maps the output rows are cut into
strips, each with its own matrix from the few input rows it reads. Evaluation passes use it where
the matrices are not too empty (:func:`matrix_strips`; engine.blocks).
"""
from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np
from numpy.lib.stride_tricks import as_strided

from common import backend
from common.backend import xp
from convolutional.geometry import pad_nhwc, unpad_nhwc, window, windows
from engine import tuning
from engine.arrays import channel_map, column_sums
from engine.parallel import image_blocks, run_blocks, scratch, sum_blocks, zero_bordered
from engine.plan import flipped_input, offsets


def _fused_taps() -> bool:
    return tuning.DEPTHWISE_EINSUM and not backend.is_gpu()


def depthwise_sum(x_pad, wk, out, stride, dilation):
    """out (N, OH, OW, C) = sum over the k² offsets of window(x_pad, i, j) * wk[i, j] (wk: (kh, kw, C))."""
    kh, kw, c = wk.shape
    n, oh, ow = out.shape[:3]
    if _fused_taps() and tuning.DEPTHWISE_ROWS and stride == (1, 1) and type(x_pad) is np.ndarray \
            and out.flags.c_contiguous \
            and x_pad.strides[3] == x_pad.itemsize and x_pad.strides[2] == c * x_pad.itemsize:
        s_n, s_h, s_w, s_c = x_pad.strides
        rows = as_strided(x_pad, (n, oh, kh, kw, ow * c), (s_n, s_h, dilation[0] * s_h, dilation[1] * s_w, s_c),
                          writeable=False)
        xp.einsum("nyijq,ijq->nyq", rows, xp.tile(wk, (1, 1, ow)), out=out.reshape(n, oh, ow * c))
        return out
    if _fused_taps():
        # element [n, y, x, i, j, c] of the view is x_pad[n, y*s + i*d, x*s + j*d, c]
        xp.einsum("nhwijc,ijc->nhwc", windows(x_pad, (kh, kw), (oh, ow), stride, dilation), wk, out=out)
        return out
    tmp = xp.empty_like(out)
    for k, (i, j) in enumerate(offsets(kh, kw)):
        view = window(x_pad, i, j, oh, ow, stride, dilation)
        if k == 0:
            xp.multiply(view, wk[i, j], out=out)
        else:
            xp.multiply(view, wk[i, j], out=tmp)
            out += tmp
    return out


def padded_block(x, n0, n1, pads, block_images):
    """Images n0..n1-1 of ``x`` (N, H, W, C) with ``pads`` of zeros, in the worker's buffer: its border
    was zeroed when it was made (:func:`engine.parallel.zero_bordered`) and only the inside is copied,
    a block at a time (on every core, and still in cache for the sums that read it)."""
    top, bottom, left, right = pads
    if not any(pads):
        return x[n0:n1]
    _n, h, w, c = x.shape
    inside = (slice(None), slice(top, top + h), slice(left, left + w))
    xb = zero_bordered((block_images, h + top + bottom, w + left + right, c), x.dtype, inside)[:n1 - n0]
    xb[inside] = x[n0:n1]
    return xb


def live_taps(k, size, out_size, stride, dilation, before, after):
    """(first, last, before', after'): the kernel taps along one axis that read the input (not only
    padding) for some output, and the padding that is left when the others are dropped. On a map
    smaller than the kernel's reach (a 7×7 kernel with padding 3 on 2×2 maps: 3 of 7 taps a side)
    the dropped taps only ever multiplied zeros, so the sum is the same with fewer of them. Tap i
    reads input rows y·s + i·d - before for y < out_size; it reads none when that range misses
    [0, size). Everything kept (0, k - 1, before, after) when a padding would turn negative."""
    used = [i for i in range(k) if i * dilation - before < size and (out_size - 1) * stride + i * dilation - before >= 0]
    if not used:
        return 0, k - 1, before, after
    first, last = used[0], used[-1]
    before2, after2 = before - first * dilation, after - (k - 1 - last) * dilation
    if before2 < 0 or after2 < 0:
        return 0, k - 1, before, after
    return first, last, before2, after2


def _tap_pairs(in_hw, out_hw, stride, pads, dilation, kernel):
    """(p, q, i, j): for every tap (i, j) of every output pixel q that reads an input pixel p (not
    padding), the flat indices p = r·W + s, q = y·OW + x and the tap, as 1-D arrays."""
    (h, w), (oh, ow), (kh, kw) = in_hw, out_hw, kernel
    y, x, i, j = xp.meshgrid(xp.arange(oh), xp.arange(ow), xp.arange(kh), xp.arange(kw), indexing="ij")
    r = y * stride[0] + i * dilation[0] - pads[0]
    s = x * stride[1] + j * dilation[1] - pads[2]
    inside = (r >= 0) & (r < h) & (s >= 0) & (s < w)
    return (r * w + s)[inside], (y * ow + x)[inside], i[inside], j[inside]


@functools.lru_cache(maxsize=256)
def matrix_strips(in_hw, out_hw, stride, pads, dilation, kernel, max_waste, min_pixels):
    """Strips (y0, y1, r0, r1) of the output rows, each made from input rows r0..r1-1 by a matrix of
    its own, with at most ``max_waste`` entries for each weight the matrices hold together; the
    fewest such strips (one, then the rows halved while a strip keeps ``min_pixels`` output
    pixels), or None.

    A whole map's matrix T (H·W × OH·OW) is mostly zeros once the map is much wider than the
    kernel; a strip of R output rows reads only R·stride + (k - 1)·dilation input rows."""
    p, q, _i, _j = _tap_pairs(in_hw, out_hw, stride, pads, dilation, kernel)
    (_h, w), (oh, ow) = in_hw, out_hw
    rows = oh
    while True:
        strips, entries = [], 0
        for y0 in range(0, oh, rows):
            y1 = min(y0 + rows, oh)
            used = p[(q >= y0 * ow) & (q < y1 * ow)]
            r0, r1 = (int(used.min()) // w, int(used.max()) // w + 1) if used.size else (0, 0)
            strips.append((y0, y1, r0, r1))
            entries += (r1 - r0) * w * (y1 - y0) * ow
        if entries <= max_waste * p.size:
            return tuple(strips)
        rows = (rows + 1) // 2
        if rows * ow < min_pixels or len(strips) == oh:
            return None


def depthwise_matrices(weight, in_hw, out_hw, stride, pads, dilation, strips=None):
    """T (C, H·W, OH·OW) of a depthwise convolution with ``weight`` (C, 1, kh, kw): T[c, p, q] is
    w[c, i, j] when output pixel q reads input pixel p through the tap (i, j), else 0. Then, with
    x (C, N, H·W) channel by channel, the convolution's output is the product x @ T (C, N, OH·OW).
    With ``strips`` (:func:`matrix_strips`), one such matrix a strip: the part of T between its
    input rows and its output rows, (C, (r1 - r0)·W, (y1 - y0)·OW)."""
    c, _one, kh, kw = weight.shape
    (h, w), (oh, ow) = in_hw, out_hw
    p, q, i, j = _tap_pairs(in_hw, out_hw, stride, pads, dilation, (kh, kw))
    t = xp.zeros((c, h * w, oh * ow), dtype=weight.dtype)
    t[:, p, q] = weight[:, 0, i, j]  # each (p, q) is joined by at most one tap
    if strips is None:
        return t
    return [xp.ascontiguousarray(t[:, r0 * w:r1 * w, y0 * ow:y1 * ow]) for y0, y1, r0, r1 in strips]


def depthwise_forward(x, weight, bias, stride, pads, dilation, out_hw, post=None):
    """x: (N, H, W, C), weight: (C, 1, kh, kw) -> out: (N, OH, OW, C), cache (the input is kept,
    not its padded copy: each block pads its images itself). Taps that read only padding are left
    out (:func:`live_taps`). ``post``: an in-place activation fused
    into the layer (engine.inference), applied to each block while it is in cache."""
    wk = xp.ascontiguousarray(weight[:, 0].transpose(1, 2, 0))  # (kh, kw, C)
    c = wk.shape[2]
    oh, ow = out_hw
    n = x.shape[0]
    out = xp.empty((n, oh, ow, c), dtype=x.dtype)
    blocks = image_blocks(n, oh * ow * c * x.itemsize, tuning.DEPTHWISE_BLOCK_BYTES)
    (top, bottom, left, right), (kh, kw) = pads, wk.shape[:2]
    i0, i1, top, bottom = live_taps(kh, x.shape[1], oh, stride[0], dilation[0], top, bottom)
    j0, j1, left, right = live_taps(kw, x.shape[2], ow, stride[1], dilation[1], left, right)
    live, live_pads = wk[i0:i1 + 1, j0:j1 + 1], (top, bottom, left, right)  # the taps that read the input

    def work(n0, n1, buf):
        xb = padded_block(x, n0, n1, live_pads, blocks[0][1])
        ob = depthwise_sum(xb, live, out[n0:n1], stride, dilation)
        if bias is not None:  # on rows of many pixels: a loop per pixel of C values would cost more
            ob2 = ob.reshape(-1, c)
            channel_map(xp.add, ob2, bias, ob2)
        if post is not None:
            post(ob)

    run_blocks(blocks, work)
    cache = SimpleNamespace(wk=wk, x=x, x_shape=x.shape, pads=pads, stride=stride,
                            dilation=dilation, out_hw=out_hw)
    return out, cache


def depthwise_backward(dy, cache):
    """dy: (N, OH, OW, C) -> dx: (N, H, W, C), dweight: (C, 1, kh, kw), dbias: (C,)."""
    wk, x = cache.wk, cache.x
    kh, kw, c = wk.shape
    oh, ow = cache.out_hw
    n = cache.x_shape[0]
    stride, dilation = cache.stride, cache.dilation
    dy = xp.ascontiguousarray(dy)
    flipped = stride == (1, 1)
    if flipped:
        dx = xp.empty(cache.x_shape, dtype=dy.dtype)
        wk_flipped = xp.ascontiguousarray(wk[::-1, ::-1])
        dy_src, dy_pads = flipped_input(dy, (kh, kw), dilation, cache.pads, cache.out_hw)
    else:
        top, bottom, left, right = cache.pads
        h, w = cache.x_shape[1:3]
        dx_pad = xp.zeros((n, h + top + bottom, w + left + right, c), dtype=dy.dtype)
    blocks = image_blocks(n, oh * ow * c * dy.itemsize, tuning.DEPTHWISE_BLOCK_BYTES)

    def part(n0, n1, buf):  # this block's dw; its dx is written on the way
        xb, dyb = padded_block(x, n0, n1, cache.pads, blocks[0][1]), dy[n0:n1]
        if _fused_taps():
            dwk = xp.einsum("nhwijc,nhwc->ijc", windows(xb, (kh, kw), (oh, ow), stride, dilation), dyb,
                            out=scratch(buf, "dw", wk.shape, dy.dtype))
        else:
            dwk = scratch(buf, "dw", wk.shape, dy.dtype)
            tb = scratch(buf, "tmp", (blocks[0][1], oh, ow, c), dy.dtype)[:n1 - n0]
            for i, j in offsets(kh, kw):
                xp.multiply(window(xb, i, j, oh, ow, stride, dilation), dyb, out=tb)
                dwk[i, j] = column_sums(tb.reshape(-1, c))
        if flipped:
            depthwise_sum(pad_nhwc(dy_src[n0:n1], dy_pads), wk_flipped, dx[n0:n1], (1, 1), dilation)
        else:
            tb = scratch(buf, "tmp", (blocks[0][1], oh, ow, c), dy.dtype)[:n1 - n0]
            dxb = dx_pad[n0:n1]
            for i, j in offsets(kh, kw):
                xp.multiply(dyb, wk[i, j], out=tb)
                dview = window(dxb, i, j, oh, ow, stride, dilation)
                dview += tb
        return dwk

    dwk = sum_blocks(blocks, part)
    if not flipped:
        dx = unpad_nhwc(dx_pad, cache.pads, cache.x_shape)
    return dx, dwk.transpose(2, 0, 1)[:, None], column_sums(dy.reshape(-1, c))
