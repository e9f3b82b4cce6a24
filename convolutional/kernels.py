"""Fast channels-last convolution kernels: shift-and-accumulate, no column matrix.

A k×k convolution is k² matrix products. For each kernel offset (i, j) the input pixels that
offset sees form a strided view ``window(x_pad, i, j)`` of shape (N, OH, OW, C); multiplied by
the (C, OC) slice ``W[i, j]`` it gives that offset's share of every output at once::

    out = sum over (i, j) of  window(x_pad, i, j) @ W[i, j]          (N, OH, OW, OC)

The backward pass uses the same offsets: dY @ W[i, j].T is *added* back into the same strided
window of a padded dX buffer (col2im as k² strided adds), and dW[i, j] = window.T @ dY. That
last product has a tiny (C, OC) result and a huge inner dimension N*OH*OW, a shape BLAS handles
poorly (measured ~3× below the other GEMMs), so dW is computed one kernel *row* at a time: the
kw windows of row i are copied side by side into an (N*OH*OW, kw*C) buffer and one GEMM gives
dW[i, :] at once.

Two ways to feed each GEMM a contiguous matrix:

* **gather** (any stride): copy the window into a reusable buffer, then one GEMM.
* **wide** (stride 1): flatten the padded input to rows ``(N*Hp*Wp, C)``. Offset (i, j) is then
  a *constant row shift* ``i*d*Wp + j*d``, so its window is the contiguous slice
  ``xf[shift : shift + N*Hp*Wp]`` -- no copy at all. The price: outputs are computed on the
  whole padded Hp×Wp grid and the valid OH×OW corner is cut out at the end.

Every GEMM goes through :func:`common.backend.gemm`, which runs small and thin products on
one BLAS thread (on a busy 2-core machine a 2-thread OpenBLAS call on a thin matrix was
measured 10-35x slower than a 1-thread one).

The naive loop twins in :mod:`convolutional.naive` are the oracle for all of these.
"""
from __future__ import annotations

from types import SimpleNamespace

from common.backend import gemm, xp
from convolutional.geometry import pad_nhwc, window

#: Use the wide path when the padded grid is at most this much larger than the output.
WIDE_MAX_WASTE = 1.5
#: Convolutions whose kh*kw*C is at most this (first layers: 5x5 on 1 channel, 3x3 on RGB) build the
#: column matrix and do ONE matrix product: k^2 products with an inner size of 1 to 3 would each
#: cost a full pass over the output for almost no arithmetic.
COLUMNS_MAX_K = 64


def conv2d_forward(x, weight, bias, stride, pads, dilation, out_hw):
    """x: (N, H, W, C), weight: (OC, C, kh, kw) (PyTorch layout), groups=1 -> out: (N, OH, OW, OC), cache."""
    wk = xp.ascontiguousarray(weight.transpose(2, 3, 1, 0))  # (kh, kw, C, OC): W[i, j] is a (C, OC) matrix
    _n, h, w, _c = x.shape
    top, bottom, left, right = pads
    hp, wp = h + top + bottom, w + left + right
    oh, ow = out_hw
    kh, kw, c, _oc = wk.shape
    if kh * kw * c <= COLUMNS_MAX_K and kh * kw > 1:
        path = "columns"
    elif stride == (1, 1) and hp * wp <= WIDE_MAX_WASTE * oh * ow:
        path = "wide"
    else:
        path = "gather"
    cache = SimpleNamespace(wk=wk, x_shape=x.shape, pads=pads, stride=stride, dilation=dilation,
                            out_hw=out_hw, path=path)
    out = {"columns": _columns_forward, "wide": _wide_forward, "gather": _gather_forward}[path](x, wk, cache)
    if bias is not None:
        out += bias
    return out, cache


def conv2d_backward(dy, cache):
    """dy: (N, OH, OW, OC) -> dx: (N, H, W, C), dweight: (OC, C, kh, kw), dbias: (OC,)."""
    backward = {"columns": _columns_backward, "wide": _wide_backward, "gather": _gather_backward}[cache.path]
    dx, dwk = backward(dy, cache)
    dbias = dy.reshape(-1, dy.shape[3]).sum(axis=0)
    return dx, dwk.transpose(3, 2, 0, 1), dbias


def _transposed(wk):
    """(kh, kw, C, OC) -> contiguous (kh, kw, OC, C). A contiguous right operand keeps BLAS on
    its fast path (a transposed view was measured up to 100× slower on small layers)."""
    return xp.ascontiguousarray(wk.transpose(0, 1, 3, 2))


def _unpad(dx_pad, cache):
    """The gradient w.r.t. the padded input -> w.r.t. the input itself (drop the padding border)."""
    n, h, w, _c = cache.x_shape
    if dx_pad.shape == tuple(cache.x_shape):
        return dx_pad
    top, _, left, _ = cache.pads
    return xp.ascontiguousarray(dx_pad[:, top:top + h, left:left + w, :])


def _offsets(kh, kw):
    return [(i, j) for i in range(kh) for j in range(kw)]


# ------------------------------------------------------------------------------ columns path
def _columns_forward(x, wk, cache):
    """im2col for thin inputs: cols (N*OH*OW, kh*kw*C), the windows side by side, then one GEMM."""
    kh, kw, c, oc = wk.shape
    n = x.shape[0]
    oh, ow = cache.out_hw
    x_pad = pad_nhwc(x, cache.pads)
    cols = xp.empty((n, oh, ow, kh * kw, c), dtype=x.dtype)
    for k, (i, j) in enumerate(_offsets(kh, kw)):
        cols[:, :, :, k, :] = window(x_pad, i, j, oh, ow, cache.stride, cache.dilation)
    cols = cols.reshape(n * oh * ow, kh * kw * c)
    cache.cols, cache.pad_shape = cols, x_pad.shape
    return gemm(cols, wk.reshape(kh * kw * c, oc)).reshape(n, oh, ow, oc)


def _columns_backward(dy, cache):
    """dW = cols.T @ dY (one GEMM); dX: dcols = dY @ W.T, then col2im as k^2 strided adds."""
    wk, cols = cache.wk, cache.cols
    kh, kw, c, oc = wk.shape
    n, h, w, _ = cache.x_shape
    oh, ow = cache.out_hw
    dy2 = dy.reshape(-1, oc)
    dwk = gemm(cols.T, dy2).reshape(kh, kw, c, oc)
    dcols = gemm(dy2, xp.ascontiguousarray(wk.reshape(kh * kw * c, oc).T)).reshape(n, oh, ow, kh * kw, c)
    dx_pad = xp.zeros(cache.pad_shape, dtype=dy.dtype)
    for k, (i, j) in enumerate(_offsets(kh, kw)):
        view = window(dx_pad, i, j, oh, ow, cache.stride, cache.dilation)
        view += dcols[:, :, :, k, :]
    return _unpad(dx_pad, cache), dwk


# ------------------------------------------------------------------------------ gather path
def _gather_forward(x, wk, cache):
    kh, kw, c, oc = wk.shape
    n = x.shape[0]
    oh, ow = cache.out_hw
    m = n * oh * ow
    x_pad = pad_nhwc(x, cache.pads)
    buf = xp.empty((n, oh, ow, c), dtype=x.dtype)
    out = xp.empty((m, oc), dtype=x.dtype)
    tmp = xp.empty((m, oc), dtype=x.dtype) if kh * kw > 1 else None
    for k, (i, j) in enumerate(_offsets(kh, kw)):
        buf[...] = window(x_pad, i, j, oh, ow, cache.stride, cache.dilation)
        if k == 0:
            gemm(buf.reshape(m, c), wk[i, j], out=out)
        else:
            gemm(buf.reshape(m, c), wk[i, j], out=tmp)
            out += tmp
    cache.x_pad = x_pad
    return out.reshape(n, oh, ow, oc)


def _gather_backward(dy, cache):
    wk, x_pad = cache.wk, cache.x_pad
    kh, kw, c, oc = wk.shape
    n, h, w, _ = cache.x_shape
    oh, ow = cache.out_hw
    m = n * oh * ow
    dy2 = dy.reshape(m, oc)
    dwk = xp.empty(wk.shape, dtype=dy.dtype)
    dw_rows = dwk.reshape(kh, kw * c, oc)
    cols = xp.empty((m, kw * c), dtype=dy.dtype)  # one kernel row's kw windows side by side
    for i in range(kh):
        for j in range(kw):
            cols.reshape(n, oh, ow, kw, c)[:, :, :, j, :] = window(x_pad, i, j, oh, ow, cache.stride,
                                                                   cache.dilation)
        gemm(cols.T, dy2, out=dw_rows[i])
    dx_pad = xp.zeros(x_pad.shape, dtype=dy.dtype)
    dcols = xp.empty((m, c), dtype=dy.dtype)
    wk_t = _transposed(wk)
    for i, j in _offsets(kh, kw):
        gemm(dy2, wk_t[i, j], out=dcols)
        view = window(dx_pad, i, j, oh, ow, cache.stride, cache.dilation)
        view += dcols.reshape(n, oh, ow, c)
    return _unpad(dx_pad, cache), dwk


# ------------------------------------------------------------------------------ wide path
def _wide_rows(cache, kh, kw):
    """Padded grid size, row count M = N*Hp*Wp and the row shift of every offset."""
    n, h, w, _c = cache.x_shape
    top, bottom, left, right = cache.pads
    hp, wp = h + top + bottom, w + left + right
    dh, dw = cache.dilation
    shifts = [i * dh * wp + j * dw for i, j in _offsets(kh, kw)]
    return hp, wp, n * hp * wp, shifts


def _wide_forward(x, wk, cache):
    kh, kw, c, oc = wk.shape
    n, h, w, _ = x.shape
    oh, ow = cache.out_hw
    top, _, left, _ = cache.pads
    hp, wp, m, shifts = _wide_rows(cache, kh, kw)
    if shifts[-1] == 0 and (hp, wp) == (h, w):  # 1x1, no padding: the input already is the matrix
        xf = x.reshape(m, c)
    else:  # padded input as rows, plus a zero tail so the last shift stays in bounds
        xf = xp.zeros((m + shifts[-1], c), dtype=x.dtype)
        xf[:m].reshape(n, hp, wp, c)[:, top:top + h, left:left + w, :] = x
    out = xp.empty((m, oc), dtype=x.dtype)
    tmp = xp.empty((m, oc), dtype=x.dtype) if kh * kw > 1 else None
    for k, (i, j) in enumerate(_offsets(kh, kw)):
        s = shifts[k]
        if k == 0:
            gemm(xf[s:s + m], wk[i, j], out=out)
        else:
            gemm(xf[s:s + m], wk[i, j], out=tmp)
            out += tmp
    cache.xf = xf
    out = out.reshape(n, hp, wp, oc)
    if (hp, wp) == (oh, ow):
        return out
    return xp.ascontiguousarray(out[:, :oh, :ow, :])  # the valid corner of the wide grid


def _wide_backward(dy, cache):
    wk, xf = cache.wk, cache.xf
    kh, kw, c, oc = wk.shape
    n, h, w, _ = cache.x_shape
    oh, ow = cache.out_hw
    top, _, left, _ = cache.pads
    hp, wp, m, shifts = _wide_rows(cache, kh, kw)
    if (hp, wp) == (oh, ow):
        dyw = dy.reshape(m, oc)
    else:  # dY on the wide grid, zero where the forward computed throw-away outputs
        dyw = xp.zeros((m, oc), dtype=dy.dtype)
        dyw.reshape(n, hp, wp, oc)[:, :oh, :ow, :] = dy
    dwk = xp.empty(wk.shape, dtype=dy.dtype)
    dw_rows = dwk.reshape(kh, kw * c, oc)
    cols = xp.empty((m, kw * c), dtype=dy.dtype) if kw > 1 else None
    for i in range(kh):
        if cols is None:  # kw == 1: the shifted rows already are the matrix
            gemm(xf[shifts[i]:shifts[i] + m].T, dyw, out=dw_rows[i])
            continue
        for j in range(kw):
            s = shifts[i * kw + j]
            cols[:, j * c:(j + 1) * c] = xf[s:s + m]
        gemm(cols.T, dyw, out=dw_rows[i])
    dxf = xp.zeros(xf.shape, dtype=dy.dtype)
    dcols = xp.empty((m, c), dtype=dy.dtype) if kh * kw > 1 else dxf
    wk_t = _transposed(wk)
    for k, (i, j) in enumerate(_offsets(kh, kw)):
        s = shifts[k]
        gemm(dyw, wk_t[i, j], out=dcols)
        if dcols is not dxf:
            rows = dxf[s:s + m]
            rows += dcols
    if xf.shape[0] == m and (hp, wp) == (h, w):
        return dxf.reshape(n, h, w, c), dwk
    dx = dxf[:m].reshape(n, hp, wp, c)[:, top:top + h, left:left + w, :]
    return xp.ascontiguousarray(dx), dwk


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
    return _unpad(dx_pad, cache), dwk.transpose(2, 0, 1)[:, None], dy.reshape(-1, c).sum(axis=0)
