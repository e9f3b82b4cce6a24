"""Winograd's minimal filtering: a 3×3 (or 5×5), stride-1 convolution with fewer multiplications.

**1-D, F(m, 3).** m outputs of a 3-tap correlation ``y[i] = Σ_j g[j] d[i+j]`` read α = m + 2
inputs. Evaluate the polynomials of the filter and of the output at α points (α - 1 finite
points p_k and "infinity", the leading coefficient), multiply there, and interpolate back::

    y = Aᵀ [ (G g) ⊙ (Bᵀ d) ]          G: (α, 3), Bᵀ: (α, α), Aᵀ: (m, α)

α multiplications instead of 3m. With the points p_k (k < α - 1) and f_k = Π_{l≠k} (p_k - p_l):

* ``G[k, j] = p_k^j / f_k``, and the last row picks g[2] (the last tap);
* ``Bᵀ[k]`` holds the coefficients (lowest power first) of Π_{l≠k} (x - p_l), and its last row
  those of Π_l (x - p_l);
* ``Aᵀ[i, k] = p_k^i``, and the last column picks the top output.

(A row k with f_k < 0 is negated in both G and Bᵀ, so G has no negative scale.)
F(2, 3) uses the points 0, 1, -1 (4 multiplications for 2 outputs instead of 6); F(4, 3) uses
0, ±1, ±1/2 (6 for 4 instead of 12): points near zero keep the transforms' entries, and with
them the float32 rounding, small (:data:`POINTS`).

**5×5 kernels, F(2, 5).** The same construction with r = 5 taps: α = m + r - 1 = 6 points, the
five finite ones of F(4, 3), so the transforms have entries of the same size and the float32
error is F(4, 3)'s. 6 multiplications for 2 outputs instead of 10; in 2-D 36/4 = 9 per output
instead of 25. Everything below holds with 3 replaced by r and "overlap by 2" by r - 1.

**2-D, F(m×m, 3×3).** Nesting the 1-D algorithm in both directions: an α×α input tile d gives
an m×m output tile ``Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A``. Over C input and OC output channels the
elementwise product becomes, at each of the α² tile positions (ξ, ν), a matrix product::

    U[ξ, ν] (C, OC)  = (G g Gᵀ)[ξ, ν]      the kernel, transformed once
    V[ξ, ν] (P, C)   = (Bᵀ d B)[ξ, ν]      every tile of every image (P tiles)
    M[ξ, ν] (P, OC)  = V[ξ, ν] @ U[ξ, ν]   α² products of P×C by C×OC
    Y (m, m, P, OC)  = Aᵀ M A, cropped to the output

α²/m² multiply-adds per output (16/4 = 4 and 36/16 = 2.25) instead of the direct 9.
The input's tiles overlap by 2 and are a strided view of the padded input (padded further at
the bottom and right so whole tiles cover the output). They are copied position-major,
(α, α, P·C), so each 2-D transform is two small products, along the tile's rows and then its
columns (:func:`two_sided`). A block of images at a time goes through the three steps
(:func:`engine.parallel.run_blocks`), so V and M stay in a core's cache; a block holds at least
as many bytes as U, which each block reads whole (:func:`engine.plan.make_plan`).

**Backward.** dX of a stride-1 convolution is the convolution of dY with the flipped kernel
(:func:`engine.convolution.input_grad_by_flipped_conv`), so it runs here too. dW through the same
factorisation: ``dU[ξ, ν] = V[ξ, ν]ᵀ @ (A dY_tile Aᵀ)[ξ, ν]`` summed over blocks, then
``dW = Gᵀ dU G`` (V is recomputed from the input, not kept).

Shapes: x (N, H, W, C) channels-last, kernel wk (r, r, C, OC) as in :func:`engine.plan.kernel_view`.
"""
from __future__ import annotations

import functools
from fractions import Fraction

import numpy as np

from common.backend import xp
from engine.parallel import run_blocks, scratch, sum_blocks, zero_bordered

#: The finite interpolation points, by how many F(m, r) needs (m + r - 2; the last point is always
#: infinity): F(2, 3) takes three, F(4, 3) and F(2, 5) take five.
POINTS = {3: (0, 1, -1), 5: (0, 1, -1, Fraction(1, 2), Fraction(-1, 2))}


def _poly(roots):
    """Coefficients, lowest power first, of Π (x - r) over ``roots``."""
    coeffs = [Fraction(1)]
    for r in roots:
        shifted = [Fraction(0)] + coeffs              # x · p(x)
        coeffs = [s - r * c for s, c in zip(shifted, coeffs + [Fraction(0)])]
    return coeffs


@functools.cache
def transform_fractions(m: int, r: int = 3):
    """(Aᵀ (m, α), G (α, r), Bᵀ (α, α)) of F(m, r) as exact fractions (lists of rows)."""
    points = [Fraction(p) for p in POINTS[m + r - 2]]   # α - 1 finite points, α = m + r - 1
    at = [[p ** i for p in points] + [Fraction(int(i == m - 1))] for i in range(m)]
    g, bt = [], []
    for k, p in enumerate(points):
        others = points[:k] + points[k + 1:]
        f = Fraction(1)
        for q in others:
            f *= p - q
        sign = 1 if f > 0 else -1
        g.append([p ** j / abs(f) for j in range(r)])
        bt.append([sign * c for c in _poly(others)] + [Fraction(0)])
    g.append([Fraction(int(j == r - 1)) for j in range(r)])
    bt.append(_poly(points))
    return at, g, bt


def transforms(m: int, dtype=np.float64, r: int = 3):
    """(Aᵀ, G, Bᵀ) of F(m, r) as NumPy arrays of ``dtype``, on the host."""
    return tuple(np.array([[float(v) for v in row] for row in mat], dtype=dtype)
                 for mat in transform_fractions(m, r))


def device_transforms(m: int, dtype, r: int = 3):
    """(Aᵀ, A, G, Gᵀ, Bᵀ) of F(m, r) as contiguous arrays of ``dtype`` on the device."""
    at, g, bt = transforms(m, dtype, r)
    return tuple(xp.asarray(np.ascontiguousarray(a)) for a in (at, at.T, g, g.T, bt))


def two_sided(left, d, t, out):
    """``out[ξ, ν] = Σ_a Σ_b left[ξ, a] left[ν, b] d[a, b]``, the 2-D transform ``left · d · leftᵀ``
    of every column of ``d`` (s, s, R) at once, as two products: along a, then along b.
    ``t``: (K, s, R) and ``out``: (K, K, R) receive the results (K = rows of ``left``)."""
    k, s = left.shape
    xp.matmul(left, d.reshape(s, -1), out=t.reshape(k, -1))   # t[ξ, b] = Σ_a left[ξ, a] d[a, b]
    xp.matmul(left, t, out=out)                                # out[ξ, ν] = Σ_b left[ν, b] t[ξ, b]
    return out


def tile_view(a, m, tiles_hw, size):
    """The size×size tiles of ``a`` (N, Hp, Wp, C), m apart: a strided view (N, TH, TW, size, size, C)."""
    s_n, s_h, s_w, s_c = a.strides
    shape = (a.shape[0], *tiles_hw, size, size, a.shape[3])
    return xp.lib.stride_tricks.as_strided(a, shape=shape, strides=(s_n, m * s_h, m * s_w, s_h, s_w, s_c))


def kernel_transform(wk, m):
    """U (α², C, OC) = G g Gᵀ for every (input, output) channel pair of ``wk`` (r, r, C, OC): one
    product of G ⊗ G (α², r²) with the r² taps of each pair, vec(G g Gᵀ) = (G ⊗ G) vec(g), in the
    layout ``wk`` already has: for :func:`engine.plan.kernel_view`'s transposed view, U is a view of
    an (OC, α², C) array."""
    r, c, oc = wk.shape[0], wk.shape[2], wk.shape[3]
    g = transforms(m, wk.dtype, r)[1]
    gg = xp.asarray(np.kron(g, g))
    if wk.flags.c_contiguous:                  # the flipped kernel of dX: taps are rows of C·OC values
        return (gg @ wk.reshape(r * r, c * oc)).reshape(-1, c, oc)
    taps = wk.transpose(3, 0, 1, 2).reshape(oc, r * r, c)   # kernel_view's wk: a view of (OC, r, r, C)
    return xp.matmul(gg, taps).transpose(1, 2, 0)


def block_scratch(buf, name, shape, nb, plan, dtype):
    """A worker's contiguous scratch array of ``shape`` for a block of ``nb`` images, cut from one
    buffer sized for the plan's largest block (the array's size is proportional to ``nb``)."""
    size = int(np.prod(shape))
    return scratch(buf, name, (size // nb * plan.block_images,), dtype)[:size].reshape(shape)


def padded_block(x, plan, n0, n1):
    """Images n0..n1-1 of ``x`` in a worker's zero-bordered buffer of the tiles' size (the layer's pads,
    plus rows and columns at the bottom and right that whole tiles reach)."""
    top, _bottom, left, _right = plan.pads
    m, (th, tw) = plan.tile, plan.tiles
    _n, h, w, c = x.shape
    shape = (plan.block_images, th * m + plan.kernel[0] - 1, tw * m + plan.kernel[1] - 1, c)
    inside = (slice(None), slice(top, top + h), slice(left, left + w))
    padded = zero_bordered(shape, x.dtype, inside)[:n1 - n0]
    padded[inside] = x[n0:n1]
    return padded


def transform_tiles(left, tiles, buf, plan, name):
    """``left · tile · leftᵀ`` of every tile of ``tiles`` (nb, TH, TW, s, s, C): the tiles are copied
    position-major, (s, s, nb·TH·TW·C), then transformed by :func:`two_sided`. Returns (K², P, C)."""
    nb, th, tw, size, _size, c = tiles.shape
    k, rest = left.shape[0], nb * th * tw * c
    d = block_scratch(buf, name + "_tiles", (size, size, nb, th, tw, c), nb, plan, tiles.dtype)
    d[...] = tiles.transpose(3, 4, 0, 1, 2, 5)
    t = block_scratch(buf, name + "_half", (k, size, rest), nb, plan, tiles.dtype)
    out = block_scratch(buf, name, (k, k, rest), nb, plan, tiles.dtype)
    return two_sided(left, d.reshape(size, size, rest), t, out).reshape(k * k, nb * th * tw, c)


def input_transform(x, bt, plan, n0, n1, buf):
    """V (α², P, C) = Bᵀ d B for the P tiles of images n0..n1-1."""
    tiles = tile_view(padded_block(x, plan, n0, n1), plan.tile, plan.tiles, plan.alpha)
    return transform_tiles(bt, tiles, buf, plan, "v")


def output_transform(mprod, at, plan, out, buf):
    """out (nb, OH, OW, OC) = Aᵀ M A of ``mprod`` (α², P, OC): the m×m tiles put in place, cropped."""
    m, (th, tw) = plan.tile, plan.tiles
    nb, oh, ow, oc = out.shape
    alpha, rest = plan.alpha, mprod.shape[1] * oc
    t = block_scratch(buf, "y_half", (m, alpha, rest), nb, plan, out.dtype)
    y = two_sided(at, mprod.reshape(alpha, alpha, rest), t,
                  block_scratch(buf, "y", (m, m, rest), nb, plan, out.dtype))
    if (oh, ow) == (th * m, tw * m):
        grid = out
    else:
        grid = block_scratch(buf, "y_grid", (nb, th * m, tw * m, oc), nb, plan, out.dtype)
    grid.reshape(nb, th, m, tw, m, oc)[...] = y.reshape(m, m, nb, th, tw, oc).transpose(2, 3, 0, 4, 1, 5)
    if grid is not out:
        out[...] = grid[:, :oh, :ow]
    return out


def winograd_forward(x, wk, plan, saved):
    """out (N, OH, OW, OC) of ``x`` (N, H, W, C) and the kernel ``wk`` (r, r, C, OC)."""
    n, oc = x.shape[0], wk.shape[3]
    u = kernel_transform(wk, plan.tile)
    at, _a, _g, _gt, bt = device_transforms(plan.tile, x.dtype, plan.kernel[0])
    saved.x = x
    out = xp.empty((n, *plan.out_hw, oc), dtype=x.dtype)

    def work(n0, n1, buf):
        v = input_transform(x, bt, plan, n0, n1, buf)
        mprod = block_scratch(buf, "m", (u.shape[0], v.shape[1], oc), n1 - n0, plan, x.dtype)
        xp.matmul(v, u, out=mprod)
        output_transform(mprod, at, plan, out[n0:n1], buf)

    run_blocks(list(plan.blocks), work)
    return out


def output_grad_tiles(dy, a, plan, n0, n1, buf):
    """Z (α², P, OC) = A dY_tile Aᵀ for the P tiles of images n0..n1-1 (dY padded with zeros to
    whole tiles: outputs that do not exist have no gradient)."""
    m, (th, tw) = plan.tile, plan.tiles
    (oh, ow), oc, nb = plan.out_hw, dy.shape[3], n1 - n0
    if (oh, ow) == (th * m, tw * m):
        grid = dy[n0:n1]
    else:
        grid = scratch(buf, "dy_grid", (plan.block_images, th * m, tw * m, oc), dy.dtype, zeros=True)[:nb]
        grid[:, :oh, :ow] = dy[n0:n1]
    return transform_tiles(a, tile_view(grid, m, (th, tw), m), buf, plan, "z")


def winograd_weight_grad(dy, wk_shape, plan, saved):
    """dW in the (OC, r, r, C) layout: dU = Vᵀ Z per block of images, summed; dW = Gᵀ dU G."""
    r, _kw, c, oc = wk_shape
    alpha = plan.alpha
    _at, a, _g, gt, bt = device_transforms(plan.tile, dy.dtype, r)

    def part(n0, n1, buf):
        v = input_transform(saved.x, bt, plan, n0, n1, buf)
        z = output_grad_tiles(dy, a, plan, n0, n1, buf)
        return xp.matmul(v.transpose(0, 2, 1), z, out=scratch(buf, "du", (alpha * alpha, c, oc), dy.dtype))

    du = sum_blocks(list(plan.blocks), part).reshape(alpha, alpha, c * oc)
    dw = two_sided(gt, du, xp.empty((r, alpha, c * oc), dtype=dy.dtype), xp.empty((r, r, c * oc), dtype=dy.dtype))
    return dw.reshape(r, r, c, oc).transpose(3, 0, 1, 2)
