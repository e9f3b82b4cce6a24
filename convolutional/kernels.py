"""Fast channels-last convolution kernels: blocks of rows, shared out to every core.

A k×k convolution is a sum of k² matrix products. For each kernel offset (i, j) the input pixels
that offset sees form a strided view ``window(x_pad, i, j)`` of shape (N, OH, OW, C); times the
(C, OC) slice ``W[i, j]`` it gives that offset's share of every output at once::

    out = sum over (i, j) of  window(x_pad, i, j) @ W[i, j]          (N, OH, OW, OC)

Copying the k² windows side by side instead gives the *column matrix* (im2col, channels-last so
each window fills whole rows), and the convolution is one product ``cols (M, k·k·C) @ Wmat``.

Either way the work splits into independent **blocks of output rows**. A block is sized to stay
in one core's cache, and :func:`common.backend.run_blocks` shares the blocks out to all cores,
with BLAS on one thread each: the copies and additions between the products then run in parallel
too, and the running sums never leave the cache (one whole-batch product after another would
stream the whole output through memory k² times).

Three paths, picked per layer:

* **columns** (thin layers, k·k·C ≤ ``COLUMNS_MAX_K``: 5×5 on grey images, 3×3 on RGB): build the
  whole column matrix, one product per block. k² products with an inner size of 1 to 3 would each
  cost a pass over the output for almost no arithmetic. The matrix is small; it is kept for dW.
* **wide** (stride 1): flatten the padded input to rows ``(N*Hp*Wp, C)``. Offset (i, j) is then a
  *constant row shift* ``i*d*Wp + j*d``, so its window is the contiguous slice
  ``xf[shift + r0 : shift + r1]``: no copy at all. The price: outputs are computed on the whole
  padded Hp×Wp grid and the valid OH×OW corner is cut out at the end.
* **gather** (strided, or small maps where the wide grid wastes too much): copy the k² windows of
  a few whole images into a column block, one product per block.

Backward:

* **dW** = Σ windowᵀ @ dY, per block, summed over the blocks.
* **dX, stride 1**: the input gradient of a stride-1 convolution *is* a convolution: dY, padded by
  ``d·(k-1) - pad`` on each side (cropped where that is negative), convolved with the kernel
  flipped in space and with its in/out channels swapped. It runs through the forward code above,
  so no block ever writes into another's rows.
* **dX, stride > 1** (and thin layers, whose few input channels would make the flipped
  convolution's products too thin): dcols = dY @ Wmatᵀ per block of images, added back into the
  k² windows of a padded dX buffer (col2im as k² strided adds, never ``np.add.at``).

The naive loop twins in :mod:`convolutional.naive` are the oracle for all of this.
"""
from __future__ import annotations

from types import SimpleNamespace

from common.backend import column_sums, cpu_workers, is_gpu, run_blocks, xp
from convolutional.geometry import image_blocks, pad_nhwc, window, windows

#: Use the wide path when the padded grid is at most this much larger than the output.
WIDE_MAX_WASTE = 1.5
#: Convolutions whose kh*kw*C is at most this build and keep their whole column matrix.
COLUMNS_MAX_K = 64
#: Bytes of output rows (wide path) or of column rows (gather, columns) in one block: what one
#: core's cache holds comfortably next to the operands.
BLOCK_BYTES = 2**20
#: ... but at least this many rows, so that each product reads its (k·k·C, OC) weights for
#: enough rows to pay for them (ResNet's 4x4 stage has 4608x512 weights and 16 rows per image).
MIN_BLOCK_ROWS = 256


def conv2d_forward(x, weight, bias, stride, pads, dilation, out_hw):
    """x: (N, H, W, C), weight: (OC, C, kh, kw) (PyTorch layout), groups=1 -> out: (N, OH, OW, OC), cache."""
    wk = xp.ascontiguousarray(weight.transpose(2, 3, 1, 0))  # (kh, kw, C, OC): W[i, j] is a (C, OC) matrix
    out, src = _convolve(x, wk, stride, pads, dilation, out_hw)
    if bias is not None:
        out += bias
    cache = SimpleNamespace(wk=wk, src=src, x_shape=x.shape, pads=pads, stride=stride,
                            dilation=dilation, out_hw=out_hw)
    return out, cache


def conv2d_backward(dy, cache):
    """dy: (N, OH, OW, OC) -> dx: (N, H, W, C), dweight: (OC, C, kh, kw), dbias: (OC,)."""
    dwk = _weight_grad(dy, cache)
    if cache.stride == (1, 1) and cache.src.path != "columns":
        dx = _input_grad_by_flipped_conv(dy, cache)
    else:
        dx = _input_grad_by_col2im(dy, cache)
    dbias = column_sums(dy.reshape(-1, dy.shape[3]))
    return dx, dwk.transpose(3, 2, 0, 1), dbias


def _offsets(kh, kw):
    return [(i, j) for i in range(kh) for j in range(kw)]


def _unpad(dx_pad, cache):
    """The gradient w.r.t. the padded input -> w.r.t. the input itself (drop the padding border)."""
    n, h, w, _c = cache.x_shape
    if dx_pad.shape == tuple(cache.x_shape):
        return dx_pad
    top, _, left, _ = cache.pads
    return xp.ascontiguousarray(dx_pad[:, top:top + h, left:left + w, :])


def _blocks(total, per_block):
    """[(r0, r1), ...] covering range(total) in steps of ``per_block`` (at least 1)."""
    step = max(1, int(per_block))
    return [(r0, min(total, r0 + step)) for r0 in range(0, total, step)]


def _path(x_shape, wk, stride, pads, out_hw):
    kh, kw, c, _oc = wk.shape
    _n, h, w, _c = x_shape
    top, bottom, left, right = pads
    if kh * kw * c <= COLUMNS_MAX_K and kh * kw > 1:
        return "columns"
    if stride == (1, 1) and (h + top + bottom) * (w + left + right) <= WIDE_MAX_WASTE * out_hw[0] * out_hw[1]:
        return "wide"
    return "gather"


def _convolve(x, wk, stride, pads, dilation, out_hw):
    """out (N, OH, OW, OC) of channels-last ``x`` and ``wk`` (kh, kw, C, OC), and the source the
    backward pass rebuilds its blocks from."""
    path = _path(x.shape, wk, stride, pads, out_hw)
    src = SimpleNamespace(path=path, kernel=wk.shape[:2], stride=stride, dilation=dilation, out_hw=out_hw)
    if path == "wide":
        return _wide_forward(x, wk, pads, src), src
    return _gather_forward(x, wk, pads, src), src


# ------------------------------------------------------------------------------ gather / columns
def _fill_columns(block, src, n0, n1):
    """block (n1-n0, OH, OW, kh*kw, C) <- the k² windows of images n0..n1-1 (one strided copy)."""
    view = windows(src.x_pad[n0:n1], src.kernel, src.out_hw, src.stride, src.dilation)
    block.reshape(view.shape)[...] = view
    return block


def _column_blocks(src, n, row_bytes):
    """Blocks of whole images whose column rows fill about one block (at least MIN_BLOCK_ROWS rows)."""
    rows = src.out_hw[0] * src.out_hw[1]
    return image_blocks(n, rows * row_bytes, max(BLOCK_BYTES, MIN_BLOCK_ROWS * row_bytes))


def _gather_forward(x, wk, pads, src):
    kh, kw, c, oc = wk.shape
    n = x.shape[0]
    oh, ow = src.out_hw
    kc = kh * kw * c
    wmat = wk.reshape(kc, oc)
    src.x_pad = pad_nhwc(x, pads)
    out = xp.empty((n, oh, ow, oc), dtype=x.dtype)
    keep = src.path == "columns"
    src.cols = xp.empty((n, oh, ow, kh * kw, c), dtype=x.dtype) if keep else None
    blocks = _column_blocks(src, n, kc * x.itemsize)

    def work(n0, n1, buf):
        if keep:
            block = src.cols[n0:n1]
        else:
            block = buf.setdefault("cols", xp.empty((blocks[0][1], oh, ow, kh * kw, c), dtype=x.dtype))[:n1 - n0]
        _fill_columns(block, src, n0, n1)
        xp.matmul(block.reshape(-1, kc), wmat, out=out[n0:n1].reshape(-1, oc))

    run_blocks(blocks, work)
    return out


def _gather_weight_grad(dy, cache):
    src = cache.src
    kh, kw, c, oc = cache.wk.shape
    kc = kh * kw * c
    oh, ow = src.out_hw
    blocks = _column_blocks(src, dy.shape[0], kc * dy.itemsize)
    partials = []

    def work(n0, n1, buf):
        if src.cols is not None:
            block = src.cols[n0:n1]
        else:
            cols = buf.setdefault("cols", xp.empty((blocks[0][1], oh, ow, kh * kw, c), dtype=dy.dtype))
            block = _fill_columns(cols[:n1 - n0], src, n0, n1)
        product = (block.reshape(-1, kc).T, dy[n0:n1].reshape(-1, oc))
        if "dw" not in buf:
            buf["dw"] = xp.matmul(*product)
            partials.append(buf["dw"])
        else:
            part = buf.setdefault("part", xp.empty((kc, oc), dtype=dy.dtype))
            buf["dw"] += xp.matmul(*product, out=part)

    run_blocks(blocks, work)
    return sum(partials[1:], partials[0]).reshape(kh, kw, c, oc)


def _input_grad_by_col2im(dy, cache):
    """Stride > 1 or thin layers: dcols = dY @ Wmatᵀ per block of images; each window of dX takes back its share."""
    src = cache.src
    kh, kw, c, oc = cache.wk.shape
    kc = kh * kw * c
    oh, ow = src.out_hw
    wmat_t = xp.ascontiguousarray(cache.wk.reshape(kc, oc).T)  # contiguous: BLAS's fast path
    dx_pad = xp.zeros(src.x_pad.shape, dtype=dy.dtype)
    blocks = _column_blocks(src, dy.shape[0], kc * dy.itemsize)

    def work(n0, n1, buf):
        dcols = buf.setdefault("dcols", xp.empty((blocks[0][1], oh, ow, kh * kw, c), dtype=dy.dtype))[:n1 - n0]
        xp.matmul(dy[n0:n1].reshape(-1, oc), wmat_t, out=dcols.reshape(-1, kc))
        for k, (i, j) in enumerate(_offsets(kh, kw)):
            view = window(dx_pad[n0:n1], i, j, oh, ow, src.stride, src.dilation)
            view += dcols[:, :, :, k, :]

    run_blocks(blocks, work)
    return _unpad(dx_pad, cache)


# ------------------------------------------------------------------------------ wide path
def _row_blocks(src, oc, itemsize):
    """Blocks of wide-grid rows whose (rows, OC) running sum fits in one block (one block on a GPU)."""
    if is_gpu():
        return [(0, src.m)]
    rows = max(BLOCK_BYTES // (oc * itemsize), MIN_BLOCK_ROWS)
    return _blocks(src.m, min(rows, -(-src.m // cpu_workers())))


def _wide_forward(x, wk, pads, src):
    kh, kw, c, oc = wk.shape
    n, h, w, _ = x.shape
    top, bottom, left, right = pads
    hp, wp = h + top + bottom, w + left + right
    dh, dw = src.dilation
    src.grid, src.m = (hp, wp), n * hp * wp
    shifts = src.shifts = [i * dh * wp + j * dw for i, j in _offsets(kh, kw)]
    if shifts[-1] == 0 and (hp, wp) == (h, w):  # 1x1, no padding: the input already is the matrix
        xf = x.reshape(src.m, c)
    else:  # padded input as rows, plus a zero tail so the last shift stays in bounds
        xf = xp.zeros((src.m + shifts[-1], c), dtype=x.dtype)
        xf[:src.m].reshape(n, hp, wp, c)[:, top:top + h, left:left + w, :] = x
    src.xf = xf
    out = xp.empty((src.m, oc), dtype=x.dtype)
    wks = wk.reshape(kh * kw, c, oc)
    blocks = _row_blocks(src, oc, x.itemsize)

    def work(r0, r1, buf):
        acc = out[r0:r1]
        xp.matmul(xf[r0 + shifts[0]:r1 + shifts[0]], wks[0], out=acc)
        if len(shifts) > 1:
            tmp = buf.setdefault("tmp", xp.empty((blocks[0][1], oc), dtype=x.dtype))[:r1 - r0]
            for k in range(1, len(shifts)):
                s = shifts[k]
                acc += xp.matmul(xf[r0 + s:r1 + s], wks[k], out=tmp)

    run_blocks(blocks, work)
    grid = out.reshape(n, hp, wp, oc)
    oh, ow = src.out_hw
    if (hp, wp) == (oh, ow):
        return grid
    return xp.ascontiguousarray(grid[:, :oh, :ow, :])  # the valid corner of the wide grid


def _wide_weight_grad(dy, cache):
    src = cache.src
    kh, kw, c, oc = cache.wk.shape
    n = dy.shape[0]
    oh, ow = src.out_hw
    if src.grid == (oh, ow):
        dyw = dy.reshape(src.m, oc)
    else:  # dY on the wide grid, zero where the forward computed throw-away outputs
        dyw = xp.zeros((src.m, oc), dtype=dy.dtype)
        dyw.reshape(n, *src.grid, oc)[:, :oh, :ow, :] = dy
    xf, shifts = src.xf, src.shifts
    blocks = _row_blocks(src, oc, dy.itemsize)
    partials = []

    def work(r0, r1, buf):
        if "dw" not in buf:
            buf["dw"] = xp.zeros((kh * kw, c, oc), dtype=dy.dtype)
            buf["part"] = xp.empty((c, oc), dtype=dy.dtype)
            partials.append(buf["dw"])
        acc, part = buf["dw"], buf["part"]
        for k, s in enumerate(shifts):
            acc[k] += xp.matmul(xf[r0 + s:r1 + s].T, dyw[r0:r1], out=part)

    run_blocks(blocks, work)
    return sum(partials[1:], partials[0]).reshape(kh, kw, c, oc)


# ------------------------------------------------------------------------------ backward
def _weight_grad(dy, cache):
    """dW in the (kh, kw, C, OC) layout, from the blocks of whichever path the forward took."""
    if cache.src.path == "wide":
        return _wide_weight_grad(dy, cache)
    return _gather_weight_grad(dy, cache)


def _input_grad_by_flipped_conv(dy, cache):
    """Stride 1: dX = dY (padded by d(k-1) - pad) convolved with the flipped, channel-swapped kernel."""
    kh, kw, _c, _oc = cache.wk.shape
    dh, dw = cache.dilation
    n, h, w, _ = cache.x_shape
    top, bottom, left, right = cache.pads
    flipped = xp.ascontiguousarray(cache.wk[::-1, ::-1].transpose(0, 1, 3, 2))  # (kh, kw, OC, C)
    need = (dh * (kh - 1) - top, dh * (kh - 1) - bottom, dw * (kw - 1) - left, dw * (kw - 1) - right)
    # A pad beyond the kernel's reach makes outputs that saw only padding; their dY reaches no
    # input, so those rows and columns are cropped (a negative pad) rather than padded.
    crop = [max(0, -p) for p in need]
    if any(crop):
        oh, ow = cache.out_hw
        dy = dy[:, crop[0]:oh - crop[1], crop[2]:ow - crop[3], :]
    dx, _src = _convolve(dy, flipped, (1, 1), tuple(max(0, p) for p in need), cache.dilation, (h, w))
    return dx


# ------------------------------------------------------------------------------ depthwise
#: The depthwise kernels work on a few images at a time so their k² passes stay in cache.
DEPTHWISE_BLOCK_BYTES = 2**19


def depthwise_forward(x, weight, bias, stride, pads, dilation, out_hw):
    """x: (N, H, W, C), weight: (C, 1, kh, kw) -> out: (N, OH, OW, C), cache.

    Each channel has its own k×k filter, so there is no matrix product: k² fused
    multiply-adds ``out += window(x_pad, i, j) * w[i, j]`` with w[i, j] a (C,) vector. They run
    on blocks of a few images, shared out to every core, so each of the k² passes reads and
    writes cached memory.
    """
    wk = xp.ascontiguousarray(weight[:, 0].transpose(1, 2, 0))  # (kh, kw, C)
    kh, kw, c = wk.shape
    oh, ow = out_hw
    n = x.shape[0]
    x_pad = pad_nhwc(x, pads)
    out = xp.empty((n, oh, ow, c), dtype=x.dtype)
    blocks = image_blocks(n, oh * ow * c * x.itemsize, DEPTHWISE_BLOCK_BYTES)

    def work(n0, n1, buf):
        xb, ob = x_pad[n0:n1], out[n0:n1]
        tb = buf.setdefault("tmp", xp.empty((blocks[0][1], oh, ow, c), dtype=x.dtype))[:n1 - n0]
        for k, (i, j) in enumerate(_offsets(kh, kw)):
            view = window(xb, i, j, oh, ow, stride, dilation)
            if k == 0:
                xp.multiply(view, wk[i, j], out=ob)
            else:
                xp.multiply(view, wk[i, j], out=tb)
                ob += tb
        if bias is not None:
            ob += bias

    run_blocks(blocks, work)
    cache = SimpleNamespace(wk=wk, x_pad=x_pad, x_shape=x.shape, pads=pads, stride=stride,
                            dilation=dilation, out_hw=out_hw)
    return out, cache


def depthwise_backward(dy, cache):
    """dy: (N, OH, OW, C) -> dx: (N, H, W, C), dweight: (C, 1, kh, kw), dbias: (C,).

    dw[i, j] = sum over (n, y, x) of window(x_pad, i, j) * dy, and dy * w[i, j] is added back
    into the same window of dx; both on blocks of a few images, like the forward pass (each
    worker sums its own dw; the blocks' dx windows never overlap, being different images).
    """
    wk, x_pad = cache.wk, cache.x_pad
    kh, kw, c = wk.shape
    oh, ow = cache.out_hw
    n = dy.shape[0]
    dx_pad = xp.zeros(x_pad.shape, dtype=dy.dtype)
    blocks = image_blocks(n, oh * ow * c * dy.itemsize, DEPTHWISE_BLOCK_BYTES)
    partials = []

    def work(n0, n1, buf):
        if "dw" not in buf:
            buf["dw"] = xp.zeros(wk.shape, dtype=dy.dtype)
            buf["tmp"] = xp.empty((blocks[0][1], oh, ow, c), dtype=dy.dtype)
            partials.append(buf["dw"])
        dwk, tb = buf["dw"], buf["tmp"][:n1 - n0]
        xb, dxb, dyb = x_pad[n0:n1], dx_pad[n0:n1], dy[n0:n1]
        for i, j in _offsets(kh, kw):
            xp.multiply(window(xb, i, j, oh, ow, cache.stride, cache.dilation), dyb, out=tb)
            dwk[i, j] += column_sums(tb.reshape(-1, c))
            xp.multiply(dyb, wk[i, j], out=tb)
            dview = window(dxb, i, j, oh, ow, cache.stride, cache.dilation)
            dview += tb

    run_blocks(blocks, work)
    dwk = sum(partials[1:], partials[0])
    return _unpad(dx_pad, cache), dwk.transpose(2, 0, 1)[:, None], column_sums(dy.reshape(-1, c))
