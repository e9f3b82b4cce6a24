"""Fast channels-last convolution kernels: column blocks that stay in cache.

A k×k convolution is one matrix product. For each kernel offset (i, j) the input pixels that
offset sees form a strided view ``window(x_pad, i, j)`` of shape (N, OH, OW, C). Copy the k²
views side by side and every output row has its k·k·C inputs in one row of a *column matrix*
(im2col, channels-last so each view is a block of whole rows); then::

    out (M, OC) = cols (M, k·k·C) @ Wmat (k·k·C, OC)          M = N·OH·OW

The whole column matrix would be k² times the input (150 MB for one ResNet-CIFAR layer), so it
is built ``CHUNK_ROWS`` rows at a time into one reusable buffer that stays in cache, and each
block goes through one GEMM straight into its rows of ``out``. (The k²-GEMMs variant, ``out +=
window @ W[i, j]``, needs no copy but reads and writes the whole output k² times, and its GEMMs
have an inner size of only C; measured here it was 1.5-2× slower, 8× on a 3-channel input.)

The backward pass reuses the blocks: dW += cols_blockᵀ @ dY_block, and dcols = dY_block @ Wmatᵀ
is added back into the k² windows of a padded dX buffer (col2im as k² strided adds).

Two ways to build a block:

* **gather** (any stride): copy each window of a few whole images into the block.
* **wide** (stride 1): flatten the padded input to rows ``(N*Hp*Wp, C)``. Offset (i, j) is then
  a *constant row shift* ``i*d*Wp + j*d``, so its part of a block is the contiguous slice
  ``xf[shift + r0 : shift + r1]`` -- plain row copies. The price: outputs are computed on the
  whole padded Hp×Wp grid and the valid OH×OW corner is cut out at the end.

The naive loop twins in :mod:`convolutional.naive` are the oracle for all of these.
"""
from __future__ import annotations

from types import SimpleNamespace

from common.backend import xp
from convolutional.geometry import pad_nhwc, window
from vectorized.layers import gemm

#: Use the wide path when the padded grid is at most this much larger than the output.
WIDE_MAX_WASTE = 1.5
#: Rows of the column matrix built at once (fewer when a block would pass CHUNK_BYTES).
CHUNK_ROWS = 16384
CHUNK_BYTES = 2**25


def _block_rows(row_bytes, unit=1):
    """Rows per block: CHUNK_ROWS, fewer if the block would exceed CHUNK_BYTES; a multiple of unit."""
    rows = max(unit, min(CHUNK_ROWS, CHUNK_BYTES // max(row_bytes, 1)))
    return rows // unit * unit


def conv2d_forward(x, weight, bias, stride, pads, dilation, out_hw):
    """x: (N, H, W, C), weight: (OC, C, kh, kw) (PyTorch layout), groups=1 -> out: (N, OH, OW, OC), cache."""
    oc, c, kh, kw = weight.shape
    wmat = xp.ascontiguousarray(weight.transpose(2, 3, 1, 0)).reshape(kh * kw * c, oc)  # rows (i, j, c)
    _n, h, w, _c = x.shape
    top, bottom, left, right = pads
    hp, wp = h + top + bottom, w + left + right
    oh, ow = out_hw
    wide = stride == (1, 1) and hp * wp <= WIDE_MAX_WASTE * oh * ow
    cache = SimpleNamespace(wmat=wmat, kernel=(kh, kw), x_shape=x.shape, pads=pads, stride=stride,
                            dilation=dilation, out_hw=out_hw, wide=wide)
    out = _wide_forward(x, wmat, cache) if wide else _gather_forward(x, wmat, cache)
    if bias is not None:
        out += bias
    return out, cache


def conv2d_backward(dy, cache):
    """dy: (N, OH, OW, OC) -> dx: (N, H, W, C), dweight: (OC, C, kh, kw), dbias: (OC,)."""
    dx, dwmat = _wide_backward(dy, cache) if cache.wide else _gather_backward(dy, cache)
    kh, kw = cache.kernel
    oc = dy.shape[3]
    dbias = dy.reshape(-1, oc).sum(axis=0)
    return dx, dwmat.reshape(kh, kw, -1, oc).transpose(3, 2, 0, 1), dbias


def _offsets(kh, kw):
    return [(i, j) for i in range(kh) for j in range(kw)]


# ------------------------------------------------------------------------------ gather path
def _gather_cols(cols, x_pad, n0, n1, cache):
    """cols[:n1-n0] (nb, OH, OW, kh, kw, C) <- the k² windows of images n0..n1-1."""
    oh, ow = cache.out_hw
    kh, kw = cache.kernel
    block = cols[:n1 - n0]
    for i, j in _offsets(kh, kw):
        block[:, :, :, i, j, :] = window(x_pad[n0:n1], i, j, oh, ow, cache.stride, cache.dilation)
    return block


def _gather_forward(x, wmat, cache):
    kc, oc = wmat.shape
    kh, kw = cache.kernel
    n, c = x.shape[0], x.shape[3]
    oh, ow = cache.out_hw
    x_pad = pad_nhwc(x, cache.pads)
    nb = max(1, _block_rows(kc * x.itemsize) // (oh * ow))  # whole images per block
    cols = xp.empty((min(nb, n), oh, ow, kh, kw, c), dtype=x.dtype)
    out = xp.empty((n, oh, ow, oc), dtype=x.dtype)
    for n0 in range(0, n, nb):
        n1 = min(n, n0 + nb)
        block = _gather_cols(cols, x_pad, n0, n1, cache)
        gemm(block.reshape(-1, kc), wmat, out=out[n0:n1].reshape(-1, oc))
    cache.x_pad = x_pad
    return out


def _gather_backward(dy, cache):
    wmat, x_pad = cache.wmat, cache.x_pad
    kc, oc = wmat.shape
    kh, kw = cache.kernel
    n, h, w, c = cache.x_shape
    oh, ow = cache.out_hw
    nb = max(1, _block_rows(kc * dy.itemsize) // (oh * ow))
    cols = xp.empty((min(nb, n), oh, ow, kh, kw, c), dtype=dy.dtype)
    dcols = xp.empty_like(cols)
    dwmat = xp.zeros((kc, oc), dtype=dy.dtype)
    dw_part = xp.empty_like(dwmat)
    dx_pad = xp.zeros(x_pad.shape, dtype=dy.dtype)
    wmat_t = xp.ascontiguousarray(wmat.T)  # a contiguous right operand keeps BLAS on its fast path
    for n0 in range(0, n, nb):
        n1 = min(n, n0 + nb)
        dy_block = dy[n0:n1].reshape(-1, oc)
        block = _gather_cols(cols, x_pad, n0, n1, cache).reshape(-1, kc)
        gemm(block.T, dy_block, out=dw_part)
        dwmat += dw_part
        dblock = dcols[:n1 - n0]
        gemm(dy_block, wmat_t, out=dblock.reshape(-1, kc))
        for i, j in _offsets(kh, kw):  # col2im: each window takes back its share
            view = window(dx_pad[n0:n1], i, j, oh, ow, cache.stride, cache.dilation)
            view += dblock[:, :, :, i, j, :]
    top, _, left, _ = cache.pads
    if x_pad.shape == cache.x_shape:
        return dx_pad, dwmat
    return xp.ascontiguousarray(dx_pad[:, top:top + h, left:left + w, :]), dwmat


# ------------------------------------------------------------------------------ wide path
def _wide_rows(cache):
    """Padded grid size, row count M = N*Hp*Wp and the row shift of every offset."""
    n, h, w, _c = cache.x_shape
    top, bottom, left, right = cache.pads
    hp, wp = h + top + bottom, w + left + right
    dh, dw = cache.dilation
    shifts = [i * dh * wp + j * dw for i, j in _offsets(*cache.kernel)]
    return hp, wp, n * hp * wp, shifts


def _wide_cols(cols, xf, r0, r1, shifts, c):
    """Rows r0..r1-1 of the wide column matrix: offset k's block is xf shifted by shifts[k]."""
    if len(shifts) == 1:  # 1×1: the shifted rows already are the block
        return xf[shifts[0] + r0:shifts[0] + r1]
    block = cols[:r1 - r0]
    for k, s in enumerate(shifts):
        block[:, k * c:(k + 1) * c] = xf[s + r0:s + r1]
    return block


def _wide_forward(x, wmat, cache):
    kc, oc = wmat.shape
    n, h, w, c = x.shape
    oh, ow = cache.out_hw
    top, _, left, _ = cache.pads
    hp, wp, m, shifts = _wide_rows(cache)
    if shifts[-1] == 0 and (hp, wp) == (h, w):  # 1x1, no padding: the input already is the matrix
        xf = x.reshape(m, c)
    else:  # padded input as rows, plus a zero tail so the last shift stays in bounds
        xf = xp.zeros((m + shifts[-1], c), dtype=x.dtype)
        xf[:m].reshape(n, hp, wp, c)[:, top:top + h, left:left + w, :] = x
    out = xp.empty((m, oc), dtype=x.dtype)
    step = _block_rows(kc * x.itemsize)
    cols = xp.empty((min(step, m), kc), dtype=x.dtype) if len(shifts) > 1 else None
    for r0 in range(0, m, step):
        r1 = min(m, r0 + step)
        gemm(_wide_cols(cols, xf, r0, r1, shifts, c), wmat, out=out[r0:r1])
    cache.xf = xf
    out = out.reshape(n, hp, wp, oc)
    if (hp, wp) == (oh, ow):
        return out
    return xp.ascontiguousarray(out[:, :oh, :ow, :])  # the valid corner of the wide grid


def _wide_backward(dy, cache):
    wmat, xf = cache.wmat, cache.xf
    kc, oc = wmat.shape
    n, h, w, c = cache.x_shape
    oh, ow = cache.out_hw
    top, _, left, _ = cache.pads
    hp, wp, m, shifts = _wide_rows(cache)
    if (hp, wp) == (oh, ow):
        dyw = dy.reshape(m, oc)
    else:  # dY on the wide grid, zero where the forward computed throw-away outputs
        dyw = xp.zeros((m, oc), dtype=dy.dtype)
        dyw.reshape(n, hp, wp, oc)[:, :oh, :ow, :] = dy
    step = _block_rows(kc * dy.itemsize)
    one = len(shifts) == 1
    cols = None if one else xp.empty((min(step, m), kc), dtype=dy.dtype)
    dwmat = xp.zeros((kc, oc), dtype=dy.dtype)
    dw_part = xp.empty_like(dwmat)
    dxf = xp.zeros(xf.shape, dtype=dy.dtype)
    dcols = xp.empty((min(step, m), kc), dtype=dy.dtype)
    wmat_t = xp.ascontiguousarray(wmat.T)  # a contiguous right operand keeps BLAS on its fast path
    for r0 in range(0, m, step):
        r1 = min(m, r0 + step)
        dy_block = dyw[r0:r1]
        gemm(_wide_cols(cols, xf, r0, r1, shifts, c).T, dy_block, out=dw_part)
        dwmat += dw_part
        if one:
            gemm(dy_block, wmat_t, out=dxf[shifts[0] + r0:shifts[0] + r1])
            continue
        dblock = dcols[:r1 - r0]
        gemm(dy_block, wmat_t, out=dblock)
        for k, s in enumerate(shifts):  # col2im: each shifted block of rows takes back its share
            rows = dxf[s + r0:s + r1]
            rows += dblock[:, k * c:(k + 1) * c]
    if xf.shape[0] == m and (hp, wp) == (h, w):
        return dxf.reshape(n, h, w, c), dwmat
    dx = dxf[:m].reshape(n, hp, wp, c)[:, top:top + h, left:left + w, :]
    return xp.ascontiguousarray(dx), dwmat


# ------------------------------------------------------------------------------ depthwise
def _image_blocks(n, per_image_bytes):
    """Ranges (n0, n1) of whole images whose output fits DEPTHWISE_BLOCK_BYTES (at least one image)."""
    nb = max(1, DEPTHWISE_BLOCK_BYTES // max(per_image_bytes, 1))
    return [(n0, min(n, n0 + nb)) for n0 in range(0, n, nb)]


#: The depthwise kernels work on a few images at a time so their k² passes stay in cache.
DEPTHWISE_BLOCK_BYTES = 2**19


def depthwise_forward(x, weight, bias, stride, pads, dilation, out_hw):
    """x: (N, H, W, C), weight: (C, 1, kh, kw) -> out: (N, OH, OW, C), cache.

    Each channel has its own k×k filter, so there is no matrix product: k² fused
    multiply-adds ``out += window(x_pad, i, j) * w[i, j]`` with w[i, j] a (C,) vector. They run
    on blocks of a few images, so each of the k² passes reads and writes cached memory.
    """
    wk = xp.ascontiguousarray(weight[:, 0].transpose(1, 2, 0))  # (kh, kw, C)
    kh, kw, c = wk.shape
    oh, ow = out_hw
    n = x.shape[0]
    x_pad = pad_nhwc(x, pads)
    out = xp.empty((n, oh, ow, c), dtype=x.dtype)
    blocks = _image_blocks(n, oh * ow * c * x.itemsize)
    tmp = xp.empty((blocks[0][1] - blocks[0][0], oh, ow, c), dtype=x.dtype)
    for n0, n1 in blocks:
        xb, ob, tb = x_pad[n0:n1], out[n0:n1], tmp[:n1 - n0]
        for k, (i, j) in enumerate(_offsets(kh, kw)):
            view = window(xb, i, j, oh, ow, stride, dilation)
            if k == 0:
                xp.multiply(view, wk[i, j], out=ob)
            else:
                xp.multiply(view, wk[i, j], out=tb)
                ob += tb
    if bias is not None:
        out += bias
    cache = SimpleNamespace(wk=wk, x_pad=x_pad, x_shape=x.shape, pads=pads, stride=stride,
                            dilation=dilation, out_hw=out_hw)
    return out, cache


def depthwise_backward(dy, cache):
    """dy: (N, OH, OW, C) -> dx: (N, H, W, C), dweight: (C, 1, kh, kw), dbias: (C,).

    dw[i, j] = sum over (n, y, x) of window(x_pad, i, j) * dy, and dy * w[i, j] is added back
    into the same window of dx; both on blocks of a few images, like the forward pass.
    """
    wk, x_pad = cache.wk, cache.x_pad
    kh, kw, c = wk.shape
    oh, ow = cache.out_hw
    n, h, w, _ = cache.x_shape
    dwk = xp.zeros(wk.shape, dtype=dy.dtype)
    dx_pad = xp.zeros(x_pad.shape, dtype=dy.dtype)
    blocks = _image_blocks(n, oh * ow * c * dy.itemsize)
    tmp = xp.empty((blocks[0][1] - blocks[0][0], oh, ow, c), dtype=dy.dtype)
    for n0, n1 in blocks:
        xb, dxb, dyb, tb = x_pad[n0:n1], dx_pad[n0:n1], dy[n0:n1], tmp[:n1 - n0]
        for i, j in _offsets(kh, kw):
            xp.multiply(window(xb, i, j, oh, ow, cache.stride, cache.dilation), dyb, out=tb)
            dwk[i, j] += tb.reshape(-1, c).sum(axis=0)
            xp.multiply(dyb, wk[i, j], out=tb)
            dview = window(dxb, i, j, oh, ow, cache.stride, cache.dilation)
            dview += tb
    top, _, left, _ = cache.pads
    dx = dx_pad if x_pad.shape == cache.x_shape else \
        xp.ascontiguousarray(dx_pad[:, top:top + h, left:left + w, :])
    return dx, dwk.transpose(2, 0, 1)[:, None], dy.reshape(-1, c).sum(axis=0)
