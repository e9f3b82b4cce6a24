"""Loop twins of the convolution and pooling layers: plain loops over output positions, in PyTorch's NCHW layout.

Slow but obviously right; the tests use them as the oracle on tiny shapes and the tutorial
shows them. Each function takes NCHW arrays and PyTorch-layout weights::

    x: (N, C, H, W)   weight: (OC, C/groups, kh, kw)   out: (N, OC, OH, OW)

``pads = (top, bottom, left, right)``; stride and dilation are pairs.
"""
from __future__ import annotations

from common.backend import xp


def _pad_nchw(x, pads, value=0.0):
    top, bottom, left, right = pads
    n, c, h, w = x.shape
    out = xp.full((n, c, h + top + bottom, w + left + right), value, dtype=x.dtype)
    out[:, :, top:top + h, left:left + w] = x
    return out


def _out_size(size, k, s, before, after, d):
    return (size + before + after - d * (k - 1) - 1) // s + 1


def _patch(x_pad, oy, ox, kh, kw, stride, dilation):
    """The (N, C, kh, kw) input patch under output position (oy, ox)."""
    (sh, sw), (dh, dw) = stride, dilation
    y0, x0 = oy * sh, ox * sw
    return x_pad[:, :, y0:y0 + dh * (kh - 1) + 1:dh, x0:x0 + dw * (kw - 1) + 1:dw]


def conv2d_naive(x, weight, bias=None, stride=(1, 1), pads=(0, 0, 0, 0), dilation=(1, 1), groups=1):
    """out[n, o, y, x] = b[o] + sum over (c, i, j) of w[o, c, i, j] * x_pad[n, c, y*s + i*d, x*s + j*d]."""
    n, _c, h, w = x.shape
    oc, cg, kh, kw = weight.shape
    ocg = oc // groups
    oh = _out_size(h, kh, stride[0], pads[0], pads[1], dilation[0])
    ow = _out_size(w, kw, stride[1], pads[2], pads[3], dilation[1])
    x_pad = _pad_nchw(x, pads)
    out = xp.zeros((n, oc, oh, ow), dtype=x.dtype)
    for oy in range(oh):
        for ox in range(ow):
            patch = _patch(x_pad, oy, ox, kh, kw, stride, dilation)
            for g in range(groups):
                p = patch[:, g * cg:(g + 1) * cg].reshape(n, -1)       # (N, Cg*kh*kw)
                wg = weight[g * ocg:(g + 1) * ocg].reshape(ocg, -1)    # (OCg, Cg*kh*kw)
                out[:, g * ocg:(g + 1) * ocg, oy, ox] = p @ wg.T
    if bias is not None:
        out += bias.reshape(1, oc, 1, 1)
    return out


def conv2d_backward_naive(dy, x, weight, stride=(1, 1), pads=(0, 0, 0, 0), dilation=(1, 1), groups=1):
    """dy: (N, OC, OH, OW) -> dx (N, C, H, W), dweight (OC, C/groups, kh, kw), dbias (OC,).

    Each output position sends dy back to the patch it read: dx_patch += dy @ W, dW += dy.T @ patch.
    """
    n, _c, h, w = x.shape
    oc, cg, kh, kw = weight.shape
    ocg = oc // groups
    _, _, oh, ow = dy.shape
    x_pad = _pad_nchw(x, pads)
    dx_pad = xp.zeros(x_pad.shape, dtype=x.dtype)
    dw = xp.zeros(weight.shape, dtype=x.dtype)
    for oy in range(oh):
        for ox in range(ow):
            patch = _patch(x_pad, oy, ox, kh, kw, stride, dilation)
            dpatch = _patch(dx_pad, oy, ox, kh, kw, stride, dilation)  # a view: += writes into dx_pad
            for g in range(groups):
                g_out = dy[:, g * ocg:(g + 1) * ocg, oy, ox]           # (N, OCg)
                p = patch[:, g * cg:(g + 1) * cg].reshape(n, -1)
                dw[g * ocg:(g + 1) * ocg] += (g_out.T @ p).reshape(ocg, cg, kh, kw)
                wg = weight[g * ocg:(g + 1) * ocg].reshape(ocg, -1)
                dpatch[:, g * cg:(g + 1) * cg] += (g_out @ wg).reshape(n, cg, kh, kw)
    top, _, left, _ = pads
    dx = dx_pad[:, :, top:top + h, left:left + w]
    return dx, dw, dy.sum(axis=(0, 2, 3))


def maxpool2d_naive(x, kernel, stride, pads):
    """out[n, c, y, x] = max of the window; also the flat index of the first maximum in each window."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw) = kernel, stride
    oh = _out_size(h, kh, sh, pads[0], pads[1], 1)
    ow = _out_size(w, kw, sw, pads[2], pads[3], 1)
    x_pad = _pad_nchw(x, pads, value=-xp.inf)
    out = xp.empty((n, c, oh, ow), dtype=x.dtype)
    arg = xp.empty((n, c, oh, ow), dtype=xp.int64)
    for oy in range(oh):
        for ox in range(ow):
            patch = _patch(x_pad, oy, ox, kh, kw, (sh, sw), (1, 1)).reshape(n, c, -1)
            arg[:, :, oy, ox] = patch.argmax(axis=2)  # argmax returns the first maximum
            out[:, :, oy, ox] = patch.max(axis=2)
    return out, arg


def maxpool2d_backward_naive(dy, x_shape, arg, kernel, stride, pads):
    """Each window's gradient goes to its (first) maximum only."""
    n, c, h, w = x_shape
    (_kh, kw), (sh, sw) = kernel, stride
    top, bottom, left, right = pads
    dx_pad = xp.zeros((n, c, h + top + bottom, w + left + right), dtype=dy.dtype)
    _, _, oh, ow = dy.shape
    for b in range(n):
        for ch in range(c):
            for oy in range(oh):
                for ox in range(ow):
                    i, j = divmod(int(arg[b, ch, oy, ox]), kw)
                    dx_pad[b, ch, oy * sh + i, ox * sw + j] += dy[b, ch, oy, ox]
    return dx_pad[:, :, top:top + h, left:left + w]


def avgpool2d_naive(x, kernel, stride, pads):
    """Window mean, padding counted as zeros (count_include_pad=True)."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw) = kernel, stride
    oh = _out_size(h, kh, sh, pads[0], pads[1], 1)
    ow = _out_size(w, kw, sw, pads[2], pads[3], 1)
    x_pad = _pad_nchw(x, pads)
    out = xp.empty((n, c, oh, ow), dtype=x.dtype)
    for oy in range(oh):
        for ox in range(ow):
            out[:, :, oy, ox] = _patch(x_pad, oy, ox, kh, kw, (sh, sw), (1, 1)).mean(axis=(2, 3))
    return out


def adaptive_avgpool2d_naive(x, output_size):
    """PyTorch's rule: output cell i averages input rows floor(i*H/oh) .. ceil((i+1)*H/oh) - 1."""
    n, c, h, w = x.shape
    oh, ow = output_size
    out = xp.empty((n, c, oh, ow), dtype=x.dtype)
    for i in range(oh):
        for j in range(ow):
            y0, y1 = (i * h) // oh, -((-(i + 1) * h) // oh)
            x0, x1 = (j * w) // ow, -((-(j + 1) * w) // ow)
            out[:, :, i, j] = x[:, :, y0:y1, x0:x1].mean(axis=(2, 3))
    return out
