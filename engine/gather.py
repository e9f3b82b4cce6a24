"""The column-matrix ("gather") convolution, built a block of whole images at a time.

A k×k convolution is one matrix product. For each kernel offset (i, j) the input pixels that
offset sees form a strided view ``window(x_pad, i, j)`` of shape (N, OH, OW, C). Copied side by
side, the k² windows give every output pixel its k·k·C inputs in one row of the *column matrix*
(im2col; channels-last, so a window of a row of pixels is one run of kw·C values)::

    out (M, OC) = cols (M, k·k·C) @ Wmat (k·k·C, OC)      M = N·OH·OW, rows of Wmat in (i, j, c) order

The whole matrix is k² times the input, so it is built a block of whole images at a time
(``CONV_BLOCK_BYTES`` of columns), each block padding its own images into a worker's buffer and
going through one product straight into its rows of ``out``. :func:`engine.parallel.run_blocks`
shares the blocks out to every core, so the copies run in parallel too and each block's product
reads its columns while they are still in the caches. Thin layers ("columns" path) keep their
whole, small column matrix for the backward pass instead.

dW = colsᵀ @ dY, one product per block (blocks rebuilt, or read from the kept matrix), summed.
"""
from __future__ import annotations

from common.backend import xp
from convolutional.geometry import window, windows
from engine import tuning
from engine.parallel import run_blocks, scratch, sum_blocks
from engine.plan import offsets, wmat


def fill_columns(block, x, plan, n0, n1, buf):
    """block (n1-n0, OH, OW, kh*kw, C) <- the k² windows of images n0..n1-1, as one strided copy.

    With one channel a run of the copy is only kw values, so the k² windows are copied one by
    one instead, each a run of OW values per row."""
    x_pad = padded_images(x, plan, n0, n1, buf)
    if x_pad.shape[3] == 1:
        oh, ow = plan.out_hw
        for k, (i, j) in enumerate(offsets(*plan.kernel)):
            block[:, :, :, k, :] = window(x_pad, i, j, oh, ow, plan.stride, plan.dilation)
        return block
    view = windows(x_pad, plan.kernel, plan.out_hw, plan.stride, plan.dilation)
    block.reshape(view.shape)[...] = view
    return block


def padded_images(x, plan, n0, n1, buf):
    """Images n0..n1-1 of ``x`` with their zero border, padded into a worker's buffer (zeroed
    once: only the inside is written), so no padded copy of the whole batch is made or kept."""
    top, bottom, left, right = plan.pads
    if not any(plan.pads):
        return x[n0:n1]
    _n, h, w, c = x.shape
    shape = (plan.block_images, h + top + bottom, w + left + right, c)
    padded = scratch(buf, "x_pad", shape, x.dtype, zeros=True)[:n1 - n0]
    padded[:, top:top + h, left:left + w] = x[n0:n1]
    return padded


def gather_forward(x, wk, plan, saved):
    """out (N, OH, OW, OC) of ``x`` (N, H, W, C) and the kernel ``wk`` (kh, kw, C, OC)."""
    kh, kw, c, oc = wk.shape
    n = x.shape[0]
    oh, ow = plan.out_hw
    kc = kh * kw * c
    w2 = wmat(wk)
    saved.x = x
    out = xp.empty((n, oh, ow, oc), dtype=x.dtype)
    keep = plan.path == "columns"
    saved.cols = xp.empty((n, oh, ow, kh * kw, c), dtype=x.dtype) if keep else None

    def work(n0, n1, buf):
        if keep:
            block = saved.cols[n0:n1]
        else:
            block = scratch(buf, "cols", (plan.block_images, oh, ow, kh * kw, c), x.dtype)[:n1 - n0]
        fill_columns(block, x, plan, n0, n1, buf)
        xp.matmul(block.reshape(-1, kc), w2, out=out[n0:n1].reshape(-1, oc))

    run_blocks(list(plan.blocks), work)
    return out


def weight_grad(dy, wk_shape, plan, saved):
    """dW in the (OC, kh, kw, C) layout: dYᵀ @ cols per block of images, one running sum per worker.

    A thin column matrix (k·k·C ≤ ``COLUMNS_MAX_K``) takes colsᵀ @ dY instead, through ``xp.dot``
    (NumPy's ``matmul`` ran the workers' halves of such a product one after the other), and
    transposes that small result."""
    kh, kw, c, oc = wk_shape
    kc = kh * kw * c
    oh, ow = plan.out_hw
    thin = kc <= tuning.COLUMNS_MAX_K

    def part(n0, n1, buf):
        if saved.cols is not None:
            block = saved.cols[n0:n1]
        else:
            cols = scratch(buf, "cols", (plan.block_images, oh, ow, kh * kw, c), dy.dtype)
            block = fill_columns(cols[:n1 - n0], saved.x, plan, n0, n1, buf)
        dy2, cols2 = dy[n0:n1].reshape(-1, oc), block.reshape(-1, kc)
        if thin:
            return xp.dot(cols2.T, dy2, out=scratch(buf, "part", (kc, oc), dy.dtype))
        return xp.matmul(dy2.T, cols2, out=scratch(buf, "part", (oc, kc), dy.dtype))

    total = sum_blocks(list(plan.blocks), part)
    return (xp.ascontiguousarray(total.T) if thin else total).reshape(oc, kh, kw, c)
