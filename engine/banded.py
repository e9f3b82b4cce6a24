"""The banded convolution, for stride-1 layers with few input channels (LeNet's).

A column-matrix row holds k runs of only kw·C values there, and copying such short runs costs
more than a larger product. Instead, a whole output *row* is one product: the kh input rows it
sees are kh·Wp·C consecutive values of the padded input, and those values times a banded matrix
T (kh·Wp·C, OW·OC), which holds the kernel once per output column, each copy shifted one pixel
further, are the OW·OC outputs of the row::

    out rows (N·OH, OW·OC) = input rows (N·OH, kh·Wp·C) @ T

T is mostly zeros (``BAND_MAX_WASTE`` bounds them). A row can also be cut into segments of
seg_OW pixels, each a row of the product against the band of one segment (seg_OW + kw - 1 input
pixels): fewer zeros, a thinner product (``BAND_MIN_COLUMNS``). The bias rides along as one more
row of T against a column of ones in the input rows.

Backward: dT = (input rows)ᵀ @ dY rows, and each weight is the sum of dT along its diagonal of the
band; the input rows' gradient is dY rows @ Tᵀ, added back as kh adds of whole padded rows.
"""
from __future__ import annotations

from common.backend import xp
from convolutional.geometry import pad_nhwc, unpad_nhwc
from engine import tuning
from engine.arrays import copy_pixels, gemm
from engine.parallel import image_blocks, run_blocks, scratch


def band_diagonals(band, kw, ow):
    """The view (kh, kw, OW, C, OC) of ``band`` (kh, Wp, C, OW, OC) at w = ow + j: the kernel's
    column j is the diagonal j of every kernel row's block, repeated once per output column."""
    s = band.strides
    return xp.lib.stride_tricks.as_strided(band, shape=(band.shape[0], kw, ow, band.shape[2], band.shape[4]),
                                           strides=(s[0], s[1], s[1] + s[3], s[2], s[4]))


def band_matrix(wk, wp, ow, bias=None):
    """T (kh·Wp·C, OW·OC): entry ((i, ow + j, c), (ow, oc)) is the weight (i, j, c, oc), others 0;
    with a bias, one more row holding it for every output column (the input rows end in a 1)."""
    kh, kw, c, oc = wk.shape
    k = kh * wp * c
    band = xp.zeros((k + (bias is not None), ow * oc), dtype=wk.dtype)
    weights = band[:k].reshape(kh, wp, c, ow, oc)
    band_diagonals(weights, kw, ow)[...] = wk[:, :, None]
    if bias is not None:
        band[k] = xp.tile(bias, ow)
    return band


def input_rows(x_pad, kh, oh, seg_ow, seg_w, ones=False):
    """(N·OH·S, kh·seg_w·C): for each output row segment of seg_ow pixels, the seg_w columns of the
    kh padded input rows it sees; with ``ones``, a last column of ones (for the bias row)."""
    n, hp, wp, c = x_pad.shape
    item = x_pad.itemsize
    row = wp * c * item  # strides are computed, not read: NumPy may report any stride for an axis of length 1
    count = (wp - seg_w) // seg_ow + 1
    view = xp.lib.stride_tricks.as_strided(x_pad, shape=(n, oh, count, kh, seg_w * c),
                                           strides=(hp * row, row, seg_ow * c * item, row, item))
    k = kh * seg_w * c
    rows = xp.empty((n, oh, count, k + ones), dtype=x_pad.dtype)
    copy_pixels(rows[..., :k].reshape(view.shape), view, max_item_bytes=tuning.BAND_ITEM_BYTES)
    if ones:
        rows[..., k] = 1
    return rows.reshape(n * oh * count, k + ones)


def banded_forward(x, wk, plan, saved, bias=None):
    """out (N, OH, OW, OC), the bias included (the product adds it)."""
    kh, _kw, _c, oc = wk.shape
    n = x.shape[0]
    oh, ow = plan.out_hw
    x_pad = xp.ascontiguousarray(pad_nhwc(x, plan.pads))
    saved.rows = input_rows(x_pad, kh, oh, plan.seg_ow, plan.seg_w, ones=bias is not None)
    saved.band = band_matrix(wk, plan.seg_w, plan.seg_ow, bias)
    return gemm(saved.rows, saved.band).reshape(n, oh, ow, oc)


def banded_weight_grad(dy, wk_shape, plan, saved, has_bias):
    """dW as (OC, kh, kw, C) (a view) and db (None without a bias)."""
    kh, kw, c, oc = wk_shape
    seg_ow = plan.seg_ow
    k = kh * plan.seg_w * c
    dband = gemm(saved.rows.T, dy.reshape(-1, seg_ow * oc))
    dbias = dband[k].reshape(seg_ow, oc).sum(axis=0) if has_bias else None
    weights = dband[:k].reshape(kh, -1, c, seg_ow, oc)
    dwt = band_diagonals(weights, kw, seg_ow).sum(axis=2)
    return dwt.transpose(3, 0, 1, 2), dbias


def banded_input_grad(dy, wk_shape, plan, saved, x_shape):
    """Input rows' gradient = dY rows @ Tᵀ; each output row segment gives back kh padded row pieces."""
    kh, _kw, c, oc = wk_shape
    n, h, w, _c = x_shape
    top, bottom, left, right = plan.pads
    oh, ow = plan.out_hw
    seg_ow, seg_w = plan.seg_ow, plan.seg_w
    count = ow // seg_ow
    hp, wp = h + top + bottom, w + left + right
    band_t = xp.ascontiguousarray(saved.band[:kh * seg_w * c].T)  # without the bias row
    dy_rows = dy.reshape(n, oh * count, seg_ow * oc)
    dx_pad = xp.zeros((n, hp, wp * c), dtype=dy.dtype)
    blocks = image_blocks(n, oh * count * kh * seg_w * c * dy.itemsize, tuning.CONV_BLOCK_BYTES)

    def work(n0, n1, buf):  # a block of images: its product, then its row additions, in cache
        drows = scratch(buf, "drows", (blocks[0][1], oh, count, kh, seg_w * c), dy.dtype)[:n1 - n0]
        xp.matmul(dy_rows[n0:n1].reshape(-1, seg_ow * oc), band_t, out=drows.reshape(-1, kh * seg_w * c))
        for i in range(kh):
            for s in range(count):  # one add per segment: neighbouring segments overlap by kw - 1 pixels
                x0 = s * seg_ow * c
                dx_pad[n0:n1, i:i + oh, x0:x0 + seg_w * c] += drows[:, :, s, i]

    run_blocks(blocks, work)
    return unpad_nhwc(dx_pad.reshape(n, hp, wp, c), plan.pads, x_shape)
