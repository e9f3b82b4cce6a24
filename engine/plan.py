"""A convolution's plan: which algorithm runs it and with which blocks, decided once from shapes.

:func:`make_plan` looks at the kernel, the input size, the stride, padding and dilation and picks
one of five paths (the knobs are in :mod:`engine.tuning`):

* **pointwise** (1×1, stride 1, no padding): the input already is the column matrix, (M, C);
* **winograd** (3×3 or 5×5, stride 1, dilation 1, enough channels and tiles: :func:`winograd_tile`):
  Winograd's F(2×2, 3×3), F(4×4, 3×3) or F(2×2, 5×5) tiles (:mod:`engine.winograd`);
* **banded** (stride 1, few input channels: LeNet's layers, :mod:`engine.banded`);
* **columns** (thin layers, k·k·C ≤ ``COLUMNS_MAX_K``): the whole column matrix is built once and
  kept for the backward pass (:mod:`engine.gather`);
* **gather** (everything else): the column matrix is built a block of images at a time, in the
  forward pass and again in the backward pass (:mod:`engine.gather`).

The plan is frozen: the forward pass makes it, the backward pass reads it. What the backward pass
needs besides (the input, a kept column matrix, the banded rows) travels in :class:`Saved`.
"""
from __future__ import annotations

from dataclasses import dataclass

from common.backend import xp
from engine import tuning
from engine.parallel import image_blocks


@dataclass(frozen=True)
class ConvPlan:
    path: str                  # "pointwise", "winograd", "banded", "columns" or "gather"
    kernel: tuple              # (kh, kw)
    stride: tuple              # (sh, sw)
    pads: tuple                # (top, bottom, left, right)
    dilation: tuple            # (dh, dw)
    out_hw: tuple              # (OH, OW)
    blocks: tuple = ()         # ((n0, n1), ...) blocks of whole images (columns / gather / winograd)
    seg_ow: int = 0            # banded: output pixels per row segment
    seg_w: int = 0             # banded: input pixels a segment sees (seg_ow + kw - 1)
    tile: int = 0              # winograd: m, the output tile's side (F(m×m, r×r))
    tiles: tuple = ()          # winograd: (TH, TW) tiles that cover the output

    @property
    def alpha(self) -> int:
        """winograd: α = m + r - 1, the side of an input tile (and of the transformed tiles)."""
        return self.tile + self.kernel[0] - 1

    @property
    def block_images(self) -> int:
        """Images in the largest block (the first one): scratch buffers are sized by it."""
        return self.blocks[0][1] - self.blocks[0][0] if self.blocks else 0


@dataclass
class Saved:
    """Tensors the backward pass reads: the input (or its matrix), a kept column matrix, the banded rows."""
    x: object = None
    x2: object = None
    cols: object = None
    rows: object = None
    band: object = None


def winograd_tile(wk_shape, stride, dilation, out_hw, itemsize) -> int:
    """m of the Winograd tiles F(m×m, r×r) for this layer, or 0 for another path.

    Only 3×3 kernels, and 5×5 ones if ``WINOGRAD_5X5`` (always F(2×2, 5×5)), at stride 1 and
    dilation 1. ``tuning.WINOGRAD`` "off" never, "f2" / "f4" always (tests, measurements: the
    tile of 3×3 layers); "auto" when both channel counts reach ``WINOGRAD_MIN_CHANNELS`` (and
    ``WINOGRAD_SMALL_MAP_CHANNELS`` on maps under 8×8) and an image has at least
    ``WINOGRAD_MIN_TILES`` 2×2 output tiles; then, for 3×3, F(4×4) when the
    output is at least ``WINOGRAD_F4_MIN_SIZE`` on each side (float32 only if
    ``WINOGRAD_F4_FLOAT32``), else F(2×2)."""
    kh, kw, c, oc = wk_shape
    mode = tuning.WINOGRAD
    if mode not in ("auto", "off", "f2", "f4"):
        raise ValueError(f"engine.tuning.WINOGRAD must be auto, off, f2 or f4, got {mode!r}")
    sizes = ((3, 3), (5, 5)) if tuning.WINOGRAD_5X5 else ((3, 3),)
    if (kh, kw) not in sizes or stride != (1, 1) or dilation != (1, 1) or mode == "off":
        return 0
    if mode != "auto":
        return int(mode[1]) if kh == 3 else 2
    oh, ow = out_hw
    if min(c, oc) < tuning.WINOGRAD_MIN_CHANNELS or -(-oh // 2) * -(-ow // 2) < tuning.WINOGRAD_MIN_TILES:
        return 0
    if min(oh, ow) < 8 and min(c, oc) < tuning.WINOGRAD_SMALL_MAP_CHANNELS:
        return 0
    if kh == 5:
        return 2
    f4 = min(oh, ow) >= tuning.WINOGRAD_F4_MIN_SIZE and (itemsize > 4 or tuning.WINOGRAD_F4_FLOAT32)
    return 4 if f4 else 2


def choose_path(wk_shape, width, stride, pads, dilation, tile=0) -> str:
    """The path for a kernel (kh, kw, C, OC) on an input ``width`` pixels wide (``tile``: the
    layer's :func:`winograd_tile`)."""
    kh, kw, c, _oc = wk_shape
    if (kh, kw) == (1, 1) and stride == (1, 1) and not any(pads):
        return "pointwise"
    if tile:
        return "winograd"
    if (stride == (1, 1) and dilation == (1, 1) and kw * c <= tuning.BAND_MAX_RUN
            and width + pads[2] + pads[3] <= tuning.BAND_MAX_WASTE * kw):
        return "banded"
    if kh * kw * c <= tuning.COLUMNS_MAX_K and kh * kw > 1:
        return "columns"
    return "gather"


def column_blocks(n, rows_per_image, row_bytes):
    """Blocks of whole images whose column rows fill about ``CONV_BLOCK_BYTES`` (at least
    ``MIN_BLOCK_ROWS`` rows)."""
    return image_blocks(n, rows_per_image * row_bytes,
                        max(tuning.CONV_BLOCK_BYTES, tuning.MIN_BLOCK_ROWS * row_bytes))


def segments(ow, oc):
    """How many segments a banded output row is cut into: the most that divide OW and still leave
    each segment's product at least ``BAND_MIN_COLUMNS`` output columns (seg_OW·OC)."""
    return max(s for s in range(1, ow + 1)
               if ow % s == 0 and (ow // s) * oc >= min(tuning.BAND_MIN_COLUMNS, ow * oc))


def make_plan(x_shape, wk_shape, stride, pads, dilation, out_hw, itemsize) -> ConvPlan:
    """The plan for channels-last input ``x_shape`` (N, H, W, C) and kernel (kh, kw, C, OC)."""
    kh, kw, c, oc = wk_shape
    tile = winograd_tile(wk_shape, stride, dilation, out_hw, itemsize)
    path = choose_path(wk_shape, x_shape[2], stride, pads, dilation, tile)
    common = dict(path=path, kernel=(kh, kw), stride=stride, pads=pads, dilation=dilation, out_hw=out_hw)
    if path == "winograd":
        tiles = (-(-out_hw[0] // tile), -(-out_hw[1] // tile))
        alpha2 = (tile + kh - 1) ** 2   # a tile's V and M rows: α²·C and α²·OC values; U: α²·C·OC
        kernel_bytes = alpha2 * c * oc * itemsize   # U, which every block reads whole
        blocks = image_blocks(x_shape[0], tiles[0] * tiles[1] * alpha2 * (c + oc) * itemsize,
                              max(tuning.WINOGRAD_BLOCK_BYTES, int(tuning.WINOGRAD_KERNEL_SHARE * kernel_bytes)))
        return ConvPlan(**common, blocks=tuple(blocks), tile=tile, tiles=tiles)
    if path == "banded":
        seg_ow = out_hw[1] // segments(out_hw[1], oc)
        return ConvPlan(**common, seg_ow=seg_ow, seg_w=seg_ow + kw - 1)
    if path in ("columns", "gather"):
        blocks = column_blocks(x_shape[0], out_hw[0] * out_hw[1], kh * kw * c * itemsize)
        return ConvPlan(**common, blocks=tuple(blocks))
    return ConvPlan(**common)


def kernel_view(weight):
    """A PyTorch-layout weight (OC, C, kh, kw) as the (kh, kw, C, OC) kernel the products use.

    The copy is made in the layout (OC, kh, kw, C) and the kernel is a transposed *view* of it:
    that copy moves runs of C values within one output channel's weights, while copying straight
    into (kh, kw, C, OC) would read the whole weight with a stride for every value. ``wmat(wk)``
    is then ``Wmat`` as a transposed view, which BLAS reads without a copy."""
    return xp.ascontiguousarray(weight.transpose(0, 2, 3, 1)).transpose(1, 2, 3, 0)


def wmat(wk):
    """The kernel (kh, kw, C, OC) as the matrix Wmat (kh·kw·C, OC), rows in (i, j, c) order."""
    kh, kw, c, oc = wk.shape
    if wk.flags.c_contiguous:
        return wk.reshape(kh * kw * c, oc)
    return wk.transpose(3, 0, 1, 2).reshape(oc, kh * kw * c).T


def offsets(kh, kw):
    return [(i, j) for i in range(kh) for j in range(kw)]


def flipped_input(dy, kernel, dilation, pads, out_hw):
    """Stride 1: the dY that, correlated with the spatially flipped kernel, gives dX: dY cropped
    where d(k-1) - pad is negative (a pad beyond the kernel's reach makes outputs that saw only
    padding; their dY reaches no input), and the padding to apply where it is positive."""
    kh, kw = kernel
    dh, dw = dilation
    top, bottom, left, right = pads
    need = (dh * (kh - 1) - top, dh * (kh - 1) - bottom, dw * (kw - 1) - left, dw * (kw - 1) - right)
    crop = [max(0, -p) for p in need]
    if any(crop):
        oh, ow = out_hw
        dy = dy[:, crop[0]:oh - crop[1], crop[2]:ow - crop[3], :]
    return dy, tuple(max(0, p) for p in need)
