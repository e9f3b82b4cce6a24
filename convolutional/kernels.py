"""Fast channels-last convolution kernels: the column matrix, one cache-sized block at a time.

A k×k convolution is one matrix product. For each kernel offset (i, j) the input pixels that
offset sees form a strided view ``window(x_pad, i, j)`` of shape (N, OH, OW, C). Copied side by
side, the k² windows give every output pixel its k·k·C inputs in one row of the *column matrix*
(im2col; channels-last, so a window of a row of pixels is one run of kw·C values)::

    out (M, OC) = cols (M, k·k·C) @ Wmat (k·k·C, OC)      M = N·OH·OW, rows of Wmat in (i, j, c) order

The whole matrix is k² times the input (150 MB for one ResNet-CIFAR layer at batch 64), so it is
built a **block of whole images** at a time (``BLOCK_BYTES``, 2 MiB of columns),
with one strided copy (:func:`convolutional.geometry.windows`) from the block's own padded
images (:func:`_padded_images`), and each block goes through one product straight into its rows
of ``out``. :func:`common.backend.run_blocks` shares the blocks out to every core, BLAS running
one thread per core, so the copies run in parallel too and each block's product reads its
columns right after they were written, while they are still in the caches.

Four paths, picked per layer:

* **pointwise** (1×1, stride 1, no padding): the input already is the matrix, (M, C). One product.
* **columns** (thin layers, k·k·C ≤ ``COLUMNS_MAX_K``: 5×5 on grey images, 3×3 on RGB): the whole
  column matrix is small, so it is built once and kept for the backward pass.
* **gather** (everything else): blocks built in the forward pass and built again in the backward,
  so memory stays at one block per core. (Keeping a whole column matrix of 7-14 MB from the
  forward pass instead, BaselineCNN's, made its step 2-5 % slower: rebuilt blocks are read
  right after they are written, kept ones come back from memory.)
* **banded** (stride 1, few input channels: LeNet's two layers): a column-matrix row holds
  k runs of only kw·C values (5 on a grey image, 30 on LeNet's 6-channel maps), and copying such
  short runs into a product with few output channels costs more than a larger product.
  Instead, a whole output *row* is one product: the kh input rows it sees are kh·Wp·C
  consecutive values of the padded input, and those values times a banded matrix
  T (kh·Wp·C, OW·OC), which holds the kernel once per output column, each copy shifted one
  pixel further, are the OW·OC outputs of the row::

      out rows (N·OH, OW·OC) = input rows (N·OH, kh·Wp·C) @ T

  T is mostly zeros (it multiplies Wp/kw times more than needed), but the copy is one long run
  per row and the product is large and regular; ``BAND_MAX_WASTE`` bounds the zeros. A row can
  also be cut into S segments of seg_OW pixels, each a row of the product against the band of
  one segment (seg_OW + kw - 1 input pixels): fewer zeros, a thinner product
  (``BAND_MIN_COLUMNS``).

Backward:

* **dW** = colsᵀ @ dY, one product per block, summed over the blocks.
* **dX, stride 1**: the input gradient of a stride-1 convolution *is* a convolution: dY, padded by
  ``d·(k-1) - pad`` on each side (cropped where that is negative), convolved with the kernel
  flipped in space and with its in/out channels swapped. It runs through the forward code above,
  so no block ever writes into another's rows.
* **dX, stride > 1** (and thin layers, whose few input channels would make the flipped
  convolution's products too thin): dcols = dY @ Wmatᵀ per block of images, added back into the
  k² windows of a padded dX buffer (col2im as k² strided adds, never ``np.add.at``).
* **dX and dW, banded**: input rows' gradient = dY rows @ Tᵀ, added back as kh adds of whole
  padded rows (col2im's k² adds would move runs of only C values); dW is read off the band of
  (input rows)ᵀ @ dY rows.

(An earlier version summed k² shifted products ``window(x_pad, i, j) @ W[i, j]`` instead of
building columns; once the columns came from one strided copy per block, it measured 1.1-1.5×
slower on every ResNet, VGG and BaselineCNN layer.)

The naive loop twins in :mod:`convolutional.naive` are the oracle for all of this.
"""
from __future__ import annotations

from types import SimpleNamespace

from common import backend
from common.backend import channel_map, column_sums, gemm, run_blocks, scratch, sum_blocks, xp
from convolutional.geometry import copy_pixels, image_blocks, pad_nhwc, unpad_nhwc, window, windows

#: Convolutions whose kh*kw*C is at most this build and keep their whole column matrix.
COLUMNS_MAX_K = 64
#: Bytes of column rows in one block. Each block costs tens of microseconds of NumPy set-up and
#: interpreter-lock hand-offs, so blocks much smaller than this are slow (1 MiB against 4 MiB on the
#: 2-core Intel machine: BaselineCNN's 32->64 layer forward 3.8 -> 3.4 ms); blocks much larger
#: leave the caches (BaselineCNN's step on the 2-core AMD EPYC machine, whose cores have 1 MiB of
#: L2 each: 5 to 9 % faster at 2 MiB than at 4 MiB, 1 to 12 % faster than at 1 MiB or 512 KiB;
#: 2 and 4 MiB measured the same on the Intel machine, whose cores have 2 MiB).
BLOCK_BYTES = 2**21
#: ... but at least this many rows, so that each product reads its (k·k·C, OC) weights for
#: enough rows to pay for them (ResNet's 4x4 stage has 4608x512 weights and 16 rows per image;
#: with 2 MiB blocks and at least 256 rows, VGG16's step, whose 16x16 layers then run one image
#: a block, measured 5 % slower than with 4 MiB blocks; with at least 512 rows, 2 % faster).
MIN_BLOCK_ROWS = 512
#: The banded path replaces the column matrix when one window row has at most this many values
#: (kw·C; a 5x5 kernel on a grey image: 5, on LeNet's 6-channel maps: 30) ...
BAND_MAX_RUN = 32
#: ... as long as the band's zeros cost at most this factor in products (padded width / kw).
BAND_MAX_WASTE = 8
#: An output row is cut into segments, each its own row of the product against a band for
#: seg_OW output pixels (fewer zeros: (seg_OW + kw - 1) / kw times the needed multiply-adds
#: instead of Wp / kw), as long as a segment keeps at least this many output columns (seg_OW·OC).
BAND_MIN_COLUMNS = 64
#: The input rows' runs of seg_w·C values are copied one run per item up to this size
#: (:func:`convolutional.geometry.copy_pixels`): LeNet's 18 and 54 values, 2.4x and 1.2x faster.
BAND_ITEM_BYTES = 256


def conv2d_forward(x, weight, bias, stride, pads, dilation, out_hw):
    """x: (N, H, W, C), weight: (OC, C, kh, kw) (PyTorch layout), groups=1 -> out: (N, OH, OW, OC), cache."""
    wk = kernel_view(weight)  # (kh, kw, C, OC): rows of Wmat in (i, j, c) order
    out, src = _convolve(x, wk, stride, pads, dilation, out_hw, bias)
    if bias is not None and src.path != "banded":  # the banded product adds it itself
        out2 = out.reshape(-1, out.shape[3])
        channel_map(xp.add, out2, bias, out2)
    cache = SimpleNamespace(wk=wk, src=src, x_shape=x.shape, pads=pads, stride=stride,
                            dilation=dilation, out_hw=out_hw, has_bias=bias is not None)
    return out, cache


def conv2d_backward(dy, cache, input_grad: bool = True):
    """dy: (N, OH, OW, OC) -> dx: (N, H, W, C), dweight: (OC, C, kh, kw), dbias: (OC,) (None
    for a convolution without bias). dx is None, and not computed, when ``input_grad`` is False."""
    dbias = None  # the banded product computes it; the other paths sum dY below
    if cache.src.path == "pointwise":
        dx, dwt = _pointwise_backward(dy, cache, input_grad)
    else:
        dy = xp.ascontiguousarray(dy)
        if cache.src.path == "banded":
            dwt, dbias = _banded_weight_grad(dy, cache)
        else:
            dwt = _weight_grad(dy, cache)
        if not input_grad:
            dx = None
        elif cache.src.path == "banded":
            dx = _input_grad_banded(dy, cache)
        elif cache.stride == (1, 1) and cache.src.path != "columns":
            dx = _input_grad_by_flipped_conv(dy, cache)
        else:
            dx = _input_grad_by_col2im(dy, cache)
    if cache.has_bias and dbias is None:
        dbias = column_sums(dy.reshape(-1, dy.shape[3]))
    return dx, dwt.transpose(0, 3, 1, 2), dbias


def kernel_view(weight):
    """A PyTorch-layout weight (OC, C, kh, kw) as the (kh, kw, C, OC) kernel the products use.

    The copy is made in the layout (OC, kh, kw, C) and the kernel is a transposed *view* of it:
    that copy moves runs of C values within one output channel's weights, while copying
    straight into (kh, kw, C, OC) would read the whole weight with a stride for every value
    (9.4 ms against 1.1 ms for a 512x512x3x3 weight). ``wmat(wk)`` is then ``Wmat`` as a
    transposed view, which BLAS reads without a copy, and the flipped kernel of dX is a copy
    of runs of C values too."""
    return xp.ascontiguousarray(weight.transpose(0, 2, 3, 1)).transpose(1, 2, 3, 0)


def wmat(wk):
    """The kernel (kh, kw, C, OC) as the matrix Wmat (kh·kw·C, OC), rows in (i, j, c) order: a view
    of a contiguous kernel, or the transposed view of the (OC, kh·kw·C) matrix behind a
    :func:`kernel_view`."""
    kh, kw, c, oc = wk.shape
    if wk.flags.c_contiguous:
        return wk.reshape(kh * kw * c, oc)
    return wk.transpose(3, 0, 1, 2).reshape(oc, kh * kw * c).T


def _offsets(kh, kw):
    return [(i, j) for i in range(kh) for j in range(kw)]


def _banded(wk_shape, width, pads, stride, dilation):
    """Whether the banded path suits a kernel (kh, kw, C, OC) on an input ``width`` wide."""
    _kh, kw, c, _oc = wk_shape
    return (stride == (1, 1) and dilation == (1, 1) and kw * c <= BAND_MAX_RUN
            and width + pads[2] + pads[3] <= BAND_MAX_WASTE * kw)


def _path(wk, stride, pads, dilation=(1, 1), width=0):
    kh, kw, c, _oc = wk.shape
    if (kh, kw) == (1, 1) and stride == (1, 1) and not any(pads):
        return "pointwise"
    if _banded(wk.shape, width, pads, stride, dilation):
        return "banded"
    if kh * kw * c <= COLUMNS_MAX_K and kh * kw > 1:
        return "columns"
    return "gather"


def _convolve(x, wk, stride, pads, dilation, out_hw, bias=None):
    """out (N, OH, OW, OC) of channels-last ``x`` and ``wk`` (kh, kw, C, OC), and the source the
    backward pass rebuilds its blocks from. ``bias`` is added by the banded path only (in its
    product); the caller adds it for the other paths."""
    src = SimpleNamespace(path=_path(wk, stride, pads, dilation, x.shape[2]), kernel=wk.shape[:2],
                          stride=stride, dilation=dilation, out_hw=out_hw)
    if src.path == "pointwise":
        n, h, w, c = x.shape
        src.x2 = x.reshape(n * h * w, c)
        return gemm(src.x2, wmat(wk)).reshape(n, h, w, -1), src
    if src.path == "banded":
        return _banded_forward(x, wk, pads, src, bias), src
    return _gather_forward(x, wk, pads, src), src


# ------------------------------------------------------------------------------ pointwise
def _pointwise_backward(dy, cache, input_grad=True):
    """1×1: dWᵀ = dYᵀ @ X and dX = dY @ Wᵀ, each one product. Returns dx and dW as (OC, 1, 1, C)."""
    c, oc = cache.wk.shape[2:]
    dy2 = dy.reshape(-1, oc)
    dwt = gemm(dy2.T, cache.src.x2).reshape(oc, 1, 1, c)
    if not input_grad:
        return None, dwt
    dx = gemm(dy2, xp.ascontiguousarray(wmat(cache.wk).T))  # contiguous (a view here): BLAS's fast path
    return dx.reshape(cache.x_shape), dwt


# ------------------------------------------------------------------------------ gather / columns
def _fill_columns(block, src, n0, n1, buf):
    """block (n1-n0, OH, OW, kh*kw, C) <- the k² windows of images n0..n1-1, as one strided copy.

    NumPy copies a strided view one innermost run at a time, and here a run is kw·C values.
    With one channel that is only kw values (3 for a 3x3 kernel on a grey image), so the k²
    windows are copied one by one instead, each a run of OW values per row (3x faster on
    BaselineCNN's first layer)."""
    x_pad = _padded_images(src, n0, n1, buf)
    if x_pad.shape[3] == 1:
        oh, ow = src.out_hw
        for k, (i, j) in enumerate(_offsets(*src.kernel)):
            block[:, :, :, k, :] = window(x_pad, i, j, oh, ow, src.stride, src.dilation)
        return block
    view = windows(x_pad, src.kernel, src.out_hw, src.stride, src.dilation)
    block.reshape(view.shape)[...] = view
    return block


def _padded_images(src, n0, n1, buf):
    """Images n0..n1-1 of the layer's input ``src.x`` with their zero border ``src.pads``.

    Each block pads its own images into a worker's buffer (zeroed once: only the inside is
    written, the border stays 0), so the padding runs on every core, in cache, right before the
    column copy reads it, and no padded copy of the whole batch is made or kept."""
    x, (top, bottom, left, right) = src.x, src.pads
    if not any(src.pads):
        return x[n0:n1]
    _n, h, w, c = x.shape
    shape = (src.block_images, h + top + bottom, w + left + right, c)
    padded = scratch(buf, "x_pad", shape, x.dtype, zeros=True)[:n1 - n0]
    padded[:, top:top + h, left:left + w] = x[n0:n1]
    return padded


def _column_blocks(src, n, row_bytes):
    """Blocks of whole images whose column rows fill about one block (at least MIN_BLOCK_ROWS rows)."""
    rows = src.out_hw[0] * src.out_hw[1]
    return image_blocks(n, rows * row_bytes, max(BLOCK_BYTES, MIN_BLOCK_ROWS * row_bytes))


def _gather_forward(x, wk, pads, src):
    kh, kw, c, oc = wk.shape
    n = x.shape[0]
    oh, ow = src.out_hw
    kc = kh * kw * c
    w2 = wmat(wk)
    src.x, src.pads = x, pads
    out = xp.empty((n, oh, ow, oc), dtype=x.dtype)
    keep = src.path == "columns"
    src.cols = xp.empty((n, oh, ow, kh * kw, c), dtype=x.dtype) if keep else None
    blocks = _column_blocks(src, n, kc * x.itemsize)
    src.block_images = blocks[0][1]  # the largest block (blocks_of puts one first)

    def work(n0, n1, buf):
        if keep:
            block = src.cols[n0:n1]
        else:
            block = scratch(buf, "cols", (blocks[0][1], oh, ow, kh * kw, c), x.dtype)[:n1 - n0]
        _fill_columns(block, src, n0, n1, buf)
        xp.matmul(block.reshape(-1, kc), w2, out=out[n0:n1].reshape(-1, oc))

    run_blocks(blocks, work)
    return out


def _weight_grad(dy, cache):
    """dW in the (OC, kh, kw, C) layout: dYᵀ @ cols per block of images, one running sum per worker.

    A thin column matrix (k·k·C ≤ ``COLUMNS_MAX_K``: a first layer) takes colsᵀ @ dY instead, the
    same sums as a (k·k·C, OC) matrix, and transposes that small result: BLAS ran this orientation
    1.2-1.3x faster on 9 and 27 columns (0.44 against 0.57 ms for BaselineCNN's first layer),
    where the wide products gain nothing from it. That product goes through ``xp.dot``: NumPy's
    ``matmul`` of a (9, M) by (M, 32) pair ran the two workers' blocks one after the other
    (1.55 ms for both halves of BaselineCNN's first layer, 0.84 ms with ``dot``), while on the
    wide products the two measured the same."""
    src = cache.src
    kh, kw, c, oc = cache.wk.shape
    kc = kh * kw * c
    oh, ow = src.out_hw
    thin = kc <= COLUMNS_MAX_K
    blocks = _column_blocks(src, dy.shape[0], kc * dy.itemsize)

    def part(n0, n1, buf):
        if src.cols is not None:
            block = src.cols[n0:n1]
        else:
            cols = scratch(buf, "cols", (blocks[0][1], oh, ow, kh * kw, c), dy.dtype)
            block = _fill_columns(cols[:n1 - n0], src, n0, n1, buf)
        dy2, cols2 = dy[n0:n1].reshape(-1, oc), block.reshape(-1, kc)
        if thin:  # xp.dot, not matmul: see the docstring
            return xp.dot(cols2.T, dy2, out=scratch(buf, "part", (kc, oc), dy.dtype))
        return xp.matmul(dy2.T, cols2, out=scratch(buf, "part", (oc, kc), dy.dtype))

    total = sum_blocks(blocks, part)
    return (xp.ascontiguousarray(total.T) if thin else total).reshape(oc, kh, kw, c)


def _input_grad_by_col2im(dy, cache):
    """Stride > 1 or thin layers: dcols = dY @ Wmatᵀ per block of images; each window of dX takes
    back its share. A block adds into its own zeroed, padded buffer and copies the inside out to
    dX, so zeroing and unpadding run on every core, in cache, not once over the batch."""
    src = cache.src
    kh, kw, c, oc = cache.wk.shape
    kc = kh * kw * c
    oh, ow = src.out_hw
    wmat_t = xp.ascontiguousarray(wmat(cache.wk).T)  # contiguous (a view of a kernel_view): BLAS's fast path
    n, h, w, _c = cache.x_shape
    top, bottom, left, right = cache.pads
    padded = any(cache.pads)
    dx = xp.empty((n, h, w, c), dtype=dy.dtype)
    blocks = _column_blocks(src, dy.shape[0], kc * dy.itemsize)

    def work(n0, n1, buf):
        dcols = scratch(buf, "dcols", (blocks[0][1], oh, ow, kh * kw, c), dy.dtype)[:n1 - n0]
        xp.matmul(dy[n0:n1].reshape(-1, oc), wmat_t, out=dcols.reshape(-1, kc))
        if padded:
            dx_pad = scratch(buf, "dx_pad", (blocks[0][1], h + top + bottom, w + left + right, c),
                             dy.dtype)[:n1 - n0]
        else:
            dx_pad = dx[n0:n1]
        dx_pad[...] = 0
        for k, (i, j) in enumerate(_offsets(kh, kw)):
            view = window(dx_pad, i, j, oh, ow, src.stride, src.dilation)
            view += dcols[:, :, :, k, :]
        if padded:
            dx[n0:n1] = dx_pad[:, top:top + h, left:left + w]

    run_blocks(blocks, work)
    return dx


def _flipped_input(dy, cache):
    """Stride 1: the dY that, correlated with the spatially flipped kernel, gives dX: dY cropped
    where d(k-1) - pad is negative (a pad beyond the kernel's reach makes outputs that saw only
    padding; their dY reaches no input), and the padding to apply where it is positive."""
    kh, kw = cache.wk.shape[:2]
    dh, dw = cache.dilation
    top, bottom, left, right = cache.pads
    need = (dh * (kh - 1) - top, dh * (kh - 1) - bottom, dw * (kw - 1) - left, dw * (kw - 1) - right)
    crop = [max(0, -p) for p in need]
    if any(crop):
        oh, ow = cache.out_hw
        dy = dy[:, crop[0]:oh - crop[1], crop[2]:ow - crop[3], :]
    return dy, tuple(max(0, p) for p in need)


def _input_grad_by_flipped_conv(dy, cache):
    """Stride 1: dX = dY (padded by d(k-1) - pad) convolved with the flipped, channel-swapped kernel."""
    flipped = xp.ascontiguousarray(cache.wk[::-1, ::-1].transpose(0, 1, 3, 2))  # (kh, kw, OC, C)
    dy, pads = _flipped_input(dy, cache)
    dx, _src = _convolve(dy, flipped, (1, 1), pads, cache.dilation, cache.x_shape[1:3])
    return dx


# ------------------------------------------------------------------------------ banded
def _band_diagonals(band, kw, ow):
    """The view (kh, kw, OW, C, OC) of ``band`` (kh, Wp, C, OW, OC) at w = ow + j: the kernel's
    column j is the diagonal j of every kernel row's block, repeated once per output column."""
    s = band.strides
    return xp.lib.stride_tricks.as_strided(band, shape=(band.shape[0], kw, ow, band.shape[2], band.shape[4]),
                                           strides=(s[0], s[1], s[1] + s[3], s[2], s[4]))


def _band_matrix(wk, wp, ow, bias=None):
    """T (kh·Wp·C, OW·OC): entry ((i, ow + j, c), (ow, oc)) is the weight (i, j, c, oc), others 0;
    with a bias, one more row holding it for every output column (the input rows end in a 1)."""
    kh, kw, c, oc = wk.shape
    k = kh * wp * c
    band = xp.zeros((k + (bias is not None), ow * oc), dtype=wk.dtype)
    weights = band[:k].reshape(kh, wp, c, ow, oc)
    _band_diagonals(weights, kw, ow)[...] = wk[:, :, None]
    if bias is not None:
        band[k] = xp.tile(bias, ow)
    return band


def _segments(ow, oc):
    """How many segments an output row is cut into: the most that divide OW and still leave each
    segment's product at least ``BAND_MIN_COLUMNS`` output columns (seg_OW·OC)."""
    return max(s for s in range(1, ow + 1) if ow % s == 0 and (ow // s) * oc >= min(BAND_MIN_COLUMNS, ow * oc))


def _input_rows(x_pad, kh, oh, seg_ow, seg_w, ones=False):
    """(N·OH·S, kh·seg_w·C): for each output row segment of seg_ow pixels, the seg_w = seg_ow + kw - 1
    columns of the kh padded input rows it sees (kh runs of seg_w·C values; one run when S = 1);
    with ``ones``, a last column of ones (for the bias row of the band)."""
    n, hp, wp, c = x_pad.shape
    item = x_pad.itemsize
    row = wp * c * item  # strides are computed, not read: NumPy may report any stride for an axis of length 1
    segments = (wp - seg_w) // seg_ow + 1
    view = xp.lib.stride_tricks.as_strided(x_pad, shape=(n, oh, segments, kh, seg_w * c),
                                           strides=(hp * row, row, seg_ow * c * item, row, item))
    k = kh * seg_w * c
    rows = xp.empty((n, oh, segments, k + ones), dtype=x_pad.dtype)
    # splitting the last axis is always a view; each run of seg_w·C values is copied as one item
    copy_pixels(rows[..., :k].reshape(view.shape), view, max_item_bytes=BAND_ITEM_BYTES)
    if ones:
        rows[..., k] = 1
    return rows.reshape(n * oh * segments, k + ones)


def _banded_forward(x, wk, pads, src, bias=None):
    """The product adds the bias too: the input rows end in a 1 and the band in a row of biases
    (a pass over the output saved, and its gradient comes out of the dW product)."""
    kh, kw, _c, oc = wk.shape
    n = x.shape[0]
    oh, ow = src.out_hw
    src.seg_ow = ow // _segments(ow, oc)
    src.seg_w = src.seg_ow + kw - 1
    x_pad = xp.ascontiguousarray(pad_nhwc(x, pads))
    src.rows = _input_rows(x_pad, kh, oh, src.seg_ow, src.seg_w, ones=bias is not None)
    src.band = _band_matrix(wk, src.seg_w, src.seg_ow, bias)
    return gemm(src.rows, src.band).reshape(n, oh, ow, oc)


def _banded_weight_grad(dy, cache):
    """dT = (input rows)ᵀ @ dY rows; weight (i, j, c, oc) is the sum of dT along its diagonal of the
    band, and the bias (OC,) the sum of its last row (the rows' column of ones) over the segment's
    pixels. Returns dW as (OC, kh, kw, C), like :func:`_weight_grad` (a view; these kernels are
    small), and db (None without a bias)."""
    kh, kw, c, oc = cache.wk.shape
    seg_ow = cache.src.seg_ow
    k = kh * cache.src.seg_w * c
    dband = gemm(cache.src.rows.T, dy.reshape(-1, seg_ow * oc))
    dbias = dband[k].reshape(seg_ow, oc).sum(axis=0) if cache.has_bias else None
    weights = dband[:k].reshape(kh, -1, c, seg_ow, oc)
    dwt = _band_diagonals(weights, kw, seg_ow).sum(axis=2)
    return dwt.transpose(3, 0, 1, 2), dbias


def _input_grad_banded(dy, cache):
    """Input rows' gradient = dY rows @ Tᵀ; each output row segment gives back kh padded row pieces."""
    kh, _kw, c, oc = cache.wk.shape
    n, h, w, _c = cache.x_shape
    top, bottom, left, right = cache.pads
    oh, ow = cache.out_hw
    seg_ow, seg_w = cache.src.seg_ow, cache.src.seg_w
    segments = ow // seg_ow
    hp, wp = h + top + bottom, w + left + right
    band_t = xp.ascontiguousarray(cache.src.band[:kh * seg_w * c].T)  # without the bias row; contiguous: BLAS's fast path
    dy_rows = dy.reshape(n, oh * segments, seg_ow * oc)
    dx_pad = xp.zeros((n, hp, wp * c), dtype=dy.dtype)
    blocks = image_blocks(n, oh * segments * kh * seg_w * c * dy.itemsize, BLOCK_BYTES)

    def work(n0, n1, buf):  # a block of images: its product, then its row additions, in cache
        drows = scratch(buf, "drows", (blocks[0][1], oh, segments, kh, seg_w * c), dy.dtype)[:n1 - n0]
        xp.matmul(dy_rows[n0:n1].reshape(-1, seg_ow * oc), band_t, out=drows.reshape(-1, kh * seg_w * c))
        for i in range(kh):
            for s in range(segments):  # one add per segment: neighbouring segments overlap by kw - 1 pixels
                x0 = s * seg_ow * c
                dx_pad[n0:n1, i:i + oh, x0:x0 + seg_w * c] += drows[:, :, s, i]

    run_blocks(blocks, work)
    return unpad_nhwc(dx_pad.reshape(n, hp, wp, c), cache.pads, cache.x_shape)


# ------------------------------------------------------------------------------ depthwise
#: The depthwise kernels work on a few images at a time so their passes stay in cache.
DEPTHWISE_BLOCK_BYTES = 2**19
#: On the CPU, the k² multiply-adds of a depthwise convolution run as one ``einsum`` over the
#: windows view (one fused pass); on a GPU (and with this off) as k² whole-batch passes.
DEPTHWISE_EINSUM = True


def _fused_taps() -> bool:
    return DEPTHWISE_EINSUM and not backend.is_gpu()


def _depthwise_sum(x_pad, wk, out, stride, dilation):
    """out (N, OH, OW, C) = sum over the k² offsets of window(x_pad, i, j) * wk[i, j] (wk: (kh, kw, C))."""
    kh, kw, _c = wk.shape
    oh, ow = out.shape[1:3]
    if _fused_taps():
        # element [n, y, x, i, j, c] of the view is x_pad[n, y*s + i*d, x*s + j*d, c]: einsum
        # multiplies and adds the k² taps in one loop, without a temporary per tap
        xp.einsum("nhwijc,ijc->nhwc", windows(x_pad, (kh, kw), (oh, ow), stride, dilation), wk, out=out)
        return out
    tmp = xp.empty_like(out)
    for k, (i, j) in enumerate(_offsets(kh, kw)):
        view = window(x_pad, i, j, oh, ow, stride, dilation)
        if k == 0:
            xp.multiply(view, wk[i, j], out=out)
        else:
            xp.multiply(view, wk[i, j], out=tmp)
            out += tmp
    return out


def depthwise_forward(x, weight, bias, stride, pads, dilation, out_hw):
    """x: (N, H, W, C), weight: (C, 1, kh, kw) -> out: (N, OH, OW, C), cache.

    Each channel has its own k×k filter, so there is no matrix product: out is the sum over the
    k² offsets of ``window(x_pad, i, j) * w[i, j]``, with w[i, j] a (C,) vector. On the CPU that
    sum is one ``einsum`` over the windows view (measured 1.0-3.8x faster than k² separate
    multiply-adds, which each stream the block through memory twice); blocks of a few images
    are shared out to every core.
    """
    wk = xp.ascontiguousarray(weight[:, 0].transpose(1, 2, 0))  # (kh, kw, C)
    c = wk.shape[2]
    oh, ow = out_hw
    n = x.shape[0]
    x_pad = pad_nhwc(x, pads)
    out = xp.empty((n, oh, ow, c), dtype=x.dtype)
    blocks = image_blocks(n, oh * ow * c * x.itemsize, DEPTHWISE_BLOCK_BYTES)

    def work(n0, n1, buf):
        ob = _depthwise_sum(x_pad[n0:n1], wk, out[n0:n1], stride, dilation)
        if bias is not None:
            ob += bias

    run_blocks(blocks, work)
    cache = SimpleNamespace(wk=wk, x_pad=x_pad, x_shape=x.shape, pads=pads, stride=stride,
                            dilation=dilation, out_hw=out_hw)
    return out, cache


def depthwise_backward(dy, cache):
    """dy: (N, OH, OW, C) -> dx: (N, H, W, C), dweight: (C, 1, kh, kw), dbias: (C,).

    dw[i, j] = sum over (n, y, x) of window(x_pad, i, j) * dy (one ``einsum`` on the CPU). dX:
    with stride 1 it is a depthwise convolution of dY, padded by d(k-1) - pad, with the kernel
    flipped in space (as for Conv2D; :func:`_depthwise_sum`); with a stride, dy * w[i, j] is
    added back into each window of dx. Both on blocks of a few images, like the forward pass
    (each worker sums its own dw; different images' dx never overlap).
    """
    wk, x_pad = cache.wk, cache.x_pad
    kh, kw, c = wk.shape
    oh, ow = cache.out_hw
    n, h, w, _ = cache.x_shape
    stride, dilation = cache.stride, cache.dilation
    dy = xp.ascontiguousarray(dy)
    flipped = stride == (1, 1)
    if flipped:
        dx = xp.empty(cache.x_shape, dtype=dy.dtype)
        wk_flipped = xp.ascontiguousarray(wk[::-1, ::-1])
        dy_src, dy_pads = _flipped_input(dy, cache)
    else:
        dx_pad = xp.zeros(x_pad.shape, dtype=dy.dtype)
    blocks = image_blocks(n, oh * ow * c * dy.itemsize, DEPTHWISE_BLOCK_BYTES)

    def part(n0, n1, buf):  # this block's dw; its dx is written on the way
        xb, dyb = x_pad[n0:n1], dy[n0:n1]
        if _fused_taps():
            dwk = xp.einsum("nhwijc,nhwc->ijc", windows(xb, (kh, kw), (oh, ow), stride, dilation), dyb,
                            out=scratch(buf, "dw", wk.shape, dy.dtype))
        else:
            dwk = scratch(buf, "dw", wk.shape, dy.dtype)
            tb = scratch(buf, "tmp", (blocks[0][1], oh, ow, c), dy.dtype)[:n1 - n0]
            for i, j in _offsets(kh, kw):
                xp.multiply(window(xb, i, j, oh, ow, stride, dilation), dyb, out=tb)
                dwk[i, j] = column_sums(tb.reshape(-1, c))
        if flipped:
            _depthwise_sum(pad_nhwc(dy_src[n0:n1], dy_pads), wk_flipped, dx[n0:n1], (1, 1), dilation)
        else:
            tb = scratch(buf, "tmp", (blocks[0][1], oh, ow, c), dy.dtype)[:n1 - n0]
            dxb = dx_pad[n0:n1]
            for i, j in _offsets(kh, kw):
                xp.multiply(dyb, wk[i, j], out=tb)
                dview = window(dxb, i, j, oh, ow, stride, dilation)
                dview += tb
        return dwk

    dwk = sum_blocks(blocks, part)
    if not flipped:
        dx = unpad_nhwc(dx_pad, cache.pads, cache.x_shape)
    return dx, dwk.transpose(2, 0, 1)[:, None], column_sums(dy.reshape(-1, c))
