"""Winograd's minimal filtering: a 3×3, stride-1 convolution with fewer multiplications.

**1-D, F(m, 3).** m outputs of a 3-tap correlation ``y[i] = Σ_j g[j] d[i+j]`` read α = m + 2
inputs. Evaluate the polynomials of the filter and of the output at α points (α - 1 finite
points p_k and "infinity", the leading coefficient), multiply there, and interpolate back::

    y = Aᵀ [ (G g) ⊙ (Bᵀ d) ]          G: (α, 3), Bᵀ: (α, α), Aᵀ: (m, α)

α multiplications instead of 3m. With the points p_k (k < α - 1) and f_k = Π_{l≠k} (p_k - p_l):

* ``G[k, j] = p_k^j / f_k``, and the last row picks g[2];
* ``Bᵀ[k]`` holds the coefficients (lowest power first) of Π_{l≠k} (x - p_l), and its last row
  those of Π_l (x - p_l);
* ``Aᵀ[i, k] = p_k^i``, and the last column picks the top output.

(A row k with f_k < 0 is negated in both G and Bᵀ, so G has no negative scale.)
F(2, 3) uses the points 0, 1, -1 (4 multiplications for 2 outputs instead of 6); F(4, 3) uses
0, ±1, ±1/2 (6 for 4 instead of 12): points near zero keep the transforms' entries, and with
them the float32 rounding, small (:data:`POINTS`).

**2-D, F(m×m, 3×3).** Nesting the 1-D algorithm in both directions: an α×α input tile d gives
an m×m output tile ``Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A``. Over C input and OC output channels the
elementwise product becomes, at each of the α² tile positions (ξ, ν), a matrix product::

    U[ξ, ν] (C, OC)  = (G g Gᵀ)[ξ, ν]      the kernel, transformed once
    V[ξ, ν] (P, C)   = (Bᵀ d B)[ξ, ν]      every tile of every image (P tiles)
    M[ξ, ν] (P, OC)  = V[ξ, ν] @ U[ξ, ν]   α² products of P×C by C×OC
    Y (m, m, P, OC)  = Aᵀ M A, cropped to the output

α²/m² multiply-adds per output (16/4 = 4 and 36/16 = 2.25) instead of the direct 9.
The input's tiles overlap by 2 and are a strided view of the padded input (padded further at
the bottom and right so whole tiles cover the output); a block of images at a time goes
through the three steps (:func:`engine.parallel.run_blocks`), so V and M stay small.

**Backward.** dX of a stride-1 convolution is the convolution of dY with the flipped kernel
(:func:`engine.convolution.input_grad_by_flipped_conv`), so it runs here too. dW through the same
factorisation: ``dU[ξ, ν] = V[ξ, ν]ᵀ @ (A dY_tile Aᵀ)[ξ, ν]`` summed over blocks, then
``dW = Gᵀ dU G`` (V is recomputed from the input, not kept).

Shapes: x (N, H, W, C) channels-last, kernel wk (3, 3, C, OC) as in :func:`engine.plan.kernel_view`.
"""
from __future__ import annotations

import functools
from fractions import Fraction

import numpy as np

from common.backend import xp
from engine.parallel import run_blocks, scratch, sum_blocks

#: The finite interpolation points of each tile size m (the last point is always infinity).
POINTS = {2: (0, 1, -1), 4: (0, 1, -1, Fraction(1, 2), Fraction(-1, 2))}


def _poly(roots):
    """Coefficients, lowest power first, of Π (x - r) over ``roots``."""
    coeffs = [Fraction(1)]
    for r in roots:
        shifted = [Fraction(0)] + coeffs              # x · p(x)
        coeffs = [s - r * c for s, c in zip(shifted, coeffs + [Fraction(0)])]
    return coeffs


@functools.lru_cache(maxsize=None)
def transform_fractions(m: int, r: int = 3):
    """(Aᵀ (m, α), G (α, r), Bᵀ (α, α)) of F(m, r) as exact fractions (lists of rows)."""
    points = [Fraction(p) for p in POINTS[m]]
    alpha = m + r - 1
    assert len(points) == alpha - 1, "F(m, r) needs m + r - 2 finite points"
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


def transforms(m: int, dtype=np.float64):
    """(Aᵀ, G, Bᵀ) of F(m, 3) as NumPy arrays of ``dtype``, on the host."""
    return tuple(np.array([[float(v) for v in row] for row in mat], dtype=dtype)
                 for mat in transform_fractions(m))


def kron_transforms(m: int, dtype):
    """(Bᵀ ⊗ Bᵀ (α², α²), Aᵀ ⊗ Aᵀ (m², α²), A ⊗ A (α², m²)) on the device: a 2-D transform
    ``Bᵀ d B`` of a tile read as a vector of α² values is one product, vec(Bᵀ d B) = (Bᵀ ⊗ Bᵀ) vec(d)."""
    at, _g, bt = transforms(m, dtype)
    return xp.asarray(np.kron(bt, bt)), xp.asarray(np.kron(at, at)), xp.asarray(np.kron(at.T, at.T))


def tile_view(a, m, tiles_hw, size):
    """The size×size tiles of ``a`` (N, Hp, Wp, C), m apart: a strided view (N, TH, TW, size, size, C)."""
    s_n, s_h, s_w, s_c = a.strides
    shape = (a.shape[0], *tiles_hw, size, size, a.shape[3])
    return xp.lib.stride_tricks.as_strided(a, shape=shape, strides=(s_n, m * s_h, m * s_w, s_h, s_w, s_c))


def kernel_transform(wk, m):
    """U (α, α, C, OC) = G g Gᵀ for every (input, output) channel pair of ``wk`` (3, 3, C, OC)."""
    _at, g, _bt = transforms(m, wk.dtype)
    g = xp.asarray(g)
    return xp.einsum("xi,ijco,yj->xyco", g, wk, g, optimize=True)


def block_scratch(buf, name, shape, nb, plan, dtype):
    """A worker's contiguous scratch array of ``shape`` for a block of ``nb`` images, cut from one
    buffer sized for the plan's largest block (the array's size is proportional to ``nb``)."""
    size = int(np.prod(shape))
    return scratch(buf, name, (size // nb * plan.block_images,), dtype)[:size].reshape(shape)


def padded_block(x, plan, n0, n1, buf):
    """Images n0..n1-1 of ``x`` in a worker's zeroed buffer of the tiles' size (the layer's pads,
    plus rows and columns at the bottom and right that whole tiles reach)."""
    top, _bottom, left, _right = plan.pads
    m, (th, tw) = plan.tile, plan.tiles
    _n, h, w, c = x.shape
    shape = (plan.block_images, th * m + 2, tw * m + 2, c)
    padded = scratch(buf, "x_pad", shape, x.dtype, zeros=True)[:n1 - n0]
    padded[:, top:top + h, left:left + w] = x[n0:n1]
    return padded


def transform_tiles(kron, tiles, buf, plan, name):
    """``kron`` (K, s²) applied to every tile of ``tiles`` (nb, TH, TW, s, s, C): the tiles are copied
    position-major, (s, s, nb, TH, TW, C), and one product gives (K, P, C)."""
    nb, th, tw, size, _size, c = tiles.shape
    d = block_scratch(buf, name + "_tiles", (size, size, nb, th, tw, c), nb, plan, tiles.dtype)
    d[...] = tiles.transpose(3, 4, 0, 1, 2, 5)
    out = block_scratch(buf, name, (kron.shape[0], nb * th * tw * c), nb, plan, tiles.dtype)
    xp.matmul(kron, d.reshape(size * size, -1), out=out)
    return out.reshape(kron.shape[0], nb * th * tw, c)


def input_transform(x, kron_b, plan, n0, n1, buf):
    """V (α², P, C) = Bᵀ d B for the P tiles of images n0..n1-1."""
    tiles = tile_view(padded_block(x, plan, n0, n1, buf), plan.tile, plan.tiles, plan.tile + 2)
    return transform_tiles(kron_b, tiles, buf, plan, "v")


def output_transform(mprod, kron_at, plan, out, buf):
    """out (nb, OH, OW, OC) = Aᵀ M A of ``mprod`` (α², P, OC): the m×m tiles put in place, cropped."""
    m, (th, tw) = plan.tile, plan.tiles
    nb, oh, ow, oc = out.shape
    y = block_scratch(buf, "y", (m * m, mprod.shape[1] * oc), nb, plan, out.dtype)
    xp.matmul(kron_at, mprod.reshape(mprod.shape[0], -1), out=y)
    if (oh, ow) == (th * m, tw * m):
        grid = out
    else:
        grid = block_scratch(buf, "y_grid", (nb, th * m, tw * m, oc), nb, plan, out.dtype)
    grid.reshape(nb, th, m, tw, m, oc)[...] = y.reshape(m, m, nb, th, tw, oc).transpose(2, 3, 0, 4, 1, 5)
    if grid is not out:
        out[...] = grid[:, :oh, :ow]
    return out


def winograd_forward(x, wk, plan, saved):
    """out (N, OH, OW, OC) of ``x`` (N, H, W, C) and the kernel ``wk`` (3, 3, C, OC)."""
    n, c, oc, m = x.shape[0], wk.shape[2], wk.shape[3], plan.tile
    u = kernel_transform(wk, m).reshape(-1, c, oc)
    kron_b, kron_at, _kron_a = kron_transforms(m, x.dtype)
    saved.x = x
    out = xp.empty((n, *plan.out_hw, oc), dtype=x.dtype)

    def work(n0, n1, buf):
        v = input_transform(x, kron_b, plan, n0, n1, buf)
        mprod = block_scratch(buf, "m", (u.shape[0], v.shape[1], oc), n1 - n0, plan, x.dtype)
        xp.matmul(v, u, out=mprod)
        output_transform(mprod, kron_at, plan, out[n0:n1], buf)

    run_blocks(list(plan.blocks), work)
    return out


def output_grad_tiles(dy, kron_a, plan, n0, n1, buf):
    """Z (α², P, OC) = A dY_tile Aᵀ for the P tiles of images n0..n1-1 (dY padded with zeros to
    whole tiles: outputs that do not exist have no gradient)."""
    m, (th, tw) = plan.tile, plan.tiles
    (oh, ow), oc, nb = plan.out_hw, dy.shape[3], n1 - n0
    if (oh, ow) == (th * m, tw * m):
        grid = dy[n0:n1]
    else:
        grid = scratch(buf, "dy_grid", (plan.block_images, th * m, tw * m, oc), dy.dtype, zeros=True)[:nb]
        grid[:, :oh, :ow] = dy[n0:n1]
    return transform_tiles(kron_a, tile_view(grid, m, (th, tw), m), buf, plan, "z")


def winograd_weight_grad(dy, wk_shape, plan, saved):
    """dW in the (OC, 3, 3, C) layout: dU = Vᵀ Z per block of images, summed; dW = Gᵀ dU G."""
    _kh, _kw, c, oc = wk_shape
    m = plan.tile
    alpha = m + 2
    kron_b, _kron_at, kron_a = kron_transforms(m, dy.dtype)

    def part(n0, n1, buf):
        v = input_transform(saved.x, kron_b, plan, n0, n1, buf)
        z = output_grad_tiles(dy, kron_a, plan, n0, n1, buf)
        return xp.matmul(v.transpose(0, 2, 1), z, out=scratch(buf, "du", (alpha * alpha, c, oc), dy.dtype))

    du = sum_blocks(list(plan.blocks), part).reshape(alpha, alpha, c, oc)
    _at, g, _bt = transforms(m, dy.dtype)
    g = xp.asarray(g)
    return xp.einsum("xi,xyco,yj->oijc", g, du, g, optimize=True)
