"""dX of a convolution by col2im: dcols = dY @ Wmatᵀ, each window of dX takes back its share.

Used for strided convolutions and thin layers (a stride-1 convolution's dX is itself a
convolution: :func:`engine.convolution.input_grad_by_flipped_conv`). A block of images adds into its own zeroed,
padded buffer (k² strided adds, never ``np.add.at``) and copies the inside out to dX, so
zeroing and unpadding run on every core, in cache.
"""
from __future__ import annotations

from common.backend import xp
from convolutional.geometry import window
from engine.parallel import run_blocks, scratch
from engine.plan import offsets, wmat


def input_grad_by_col2im(dy, wk, plan, x_shape):
    kh, kw, c, oc = wk.shape
    kc = kh * kw * c
    oh, ow = plan.out_hw
    wmat_t = xp.ascontiguousarray(wmat(wk).T)
    n, h, w, _c = x_shape
    top, bottom, left, right = plan.pads
    padded = any(plan.pads)
    dx = xp.empty((n, h, w, c), dtype=dy.dtype)
    size = plan.block_images

    def work(n0, n1, buf):
        dcols = scratch(buf, "dcols", (size, oh, ow, kh * kw, c), dy.dtype)[:n1 - n0]
        xp.matmul(dy[n0:n1].reshape(-1, oc), wmat_t, out=dcols.reshape(-1, kc))
        if padded:
            dx_pad = scratch(buf, "dx_pad", (size, h + top + bottom, w + left + right, c), dy.dtype)[:n1 - n0]
        else:
            dx_pad = dx[n0:n1]
        dx_pad[...] = 0
        for k, (i, j) in enumerate(offsets(kh, kw)):
            view = window(dx_pad, i, j, oh, ow, plan.stride, plan.dilation)
            view += dcols[:, :, :, k, :]
        if padded:
            dx[n0:n1] = dx_pad[:, top:top + h, left:left + w]

    run_blocks(list(plan.blocks), work)
    return dx
