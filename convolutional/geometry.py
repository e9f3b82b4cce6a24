"""Shape arithmetic shared by convolution and pooling: pairs, padding, output sizes, windows.

Every conv-tier layer works on channels-last activations ``(N, H, W, C)``. A kernel offset
``(i, j)`` of a k×k window touches the input rows ``i*d, i*d + s, i*d + 2s, ...`` (d = dilation,
s = stride); :func:`window` returns exactly those rows and columns as a strided *view*, which
is the building block of the convolutions and pools.
"""
from __future__ import annotations


from common.backend import xp
from common.errors import UserError


def pair(value, name: str = "value") -> tuple[int, int]:
    """3 -> (3, 3); (3, 5) -> (3, 5). Refuses negatives and wrong lengths."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise UserError(f"{name} must be an int or a pair, got {value!r}")
        out = (int(value[0]), int(value[1]))
    else:
        out = (int(value), int(value))
    if min(out) < 0:
        raise UserError(f"{name} must be non-negative, got {value!r}")
    return out


def resolve_padding(padding, kernel_size, stride, dilation) -> tuple[int, int, int, int]:
    """int | (ph, pw) | 'same' | 'valid' -> (top, bottom, left, right).

    'same' keeps H and W (stride 1 only); for an even kernel the extra row/column goes to the
    bottom/right, as in PyTorch.
    """
    (kh, kw), (sh, sw), (dh, dw) = kernel_size, stride, dilation
    if isinstance(padding, str):
        if padding == "valid":
            return 0, 0, 0, 0
        if padding != "same":
            raise UserError(f"padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
        if (sh, sw) != (1, 1):
            raise UserError("padding='same' needs stride 1")
        th, tw = dh * (kh - 1), dw * (kw - 1)
        return th // 2, th - th // 2, tw // 2, tw - tw // 2
    ph, pw = pair(padding, "padding")
    return ph, ph, pw, pw


def output_size(size: int, kernel: int, stride: int, pad_before: int, pad_after: int,
                dilation: int = 1, what: str = "layer") -> int:
    """floor((size + pads - d*(k-1) - 1) / s) + 1; a UserError when the window does not fit."""
    span = dilation * (kernel - 1) + 1
    padded = size + pad_before + pad_after
    if padded < span:
        raise UserError(f"{what}: input size {size} (padded {padded}) is smaller than the "
                        f"kernel's reach {span}; use a larger input or a smaller kernel")
    return (padded - span) // stride + 1


def window(a, i: int, j: int, oh: int, ow: int, stride=(1, 1), dilation=(1, 1)):
    """The strided view of padded ``a: (N, Hp, Wp, C)`` seen by kernel offset (i, j): (N, oh, ow, C)."""
    (sh, sw), (dh, dw) = stride, dilation
    return a[:, i * dh: i * dh + sh * (oh - 1) + 1: sh, j * dw: j * dw + sw * (ow - 1) + 1: sw, :]


def windows(a, kernel, out_hw, stride=(1, 1), dilation=(1, 1)):
    """Every window of padded ``a: (N, Hp, Wp, C)`` at once: a strided view (N, OH, OW, kh, kw, C).

    Element [n, y, x, i, j, c] is ``a[n, y*sh + i*dh, x*sw + j*dw, c]``. Nothing is copied: the
    view visits the same memory several times, so it is only ever read (copying it into a
    contiguous buffer *is* im2col, in one call whose inner runs are kw*C values long when the
    dilation is 1, instead of k² calls with runs of C).
    """
    (kh, kw), (oh, ow), (sh, sw), (dh, dw) = kernel, out_hw, stride, dilation
    n, c = a.shape[0], a.shape[3]
    s_n, s_h, s_w, s_c = a.strides
    return xp.lib.stride_tricks.as_strided(a, shape=(n, oh, ow, kh, kw, c),
                                           strides=(s_n, s_h * sh, s_w * sw, s_h * dh, s_w * dw, s_c))


def pad_nhwc(x, pads, value=0.0):
    """Copy ``x: (N, H, W, C)`` into a buffer with ``pads = (top, bottom, left, right)`` of ``value``.

    Only the border is filled with ``value`` and only the inside is copied: each value is written once.
    """
    top, bottom, left, right = pads
    n, h, w, c = x.shape
    if not any(pads):
        return x
    out = xp.empty((n, h + top + bottom, w + left + right, c), dtype=x.dtype)
    out[:, :top] = value
    out[:, top + h:] = value
    out[:, top:top + h, :left] = value
    out[:, top:top + h, left + w:] = value
    out[:, top:top + h, left:left + w, :] = x
    return out


def unpad_nhwc(x_pad, pads, shape):
    """The inverse of :func:`pad_nhwc`: the (N, H, W, C) = ``shape`` inside of ``x_pad`` without its
    ``pads`` border, contiguous (``x_pad`` itself when there is no border). A padded input's
    gradient comes back to the input itself this way."""
    if tuple(x_pad.shape) == tuple(shape):
        return x_pad
    top, _, left, _ = pads
    _n, h, w, _c = shape
    return xp.ascontiguousarray(x_pad[:, top:top + h, left:left + w, :])


def check_nhwc(x, channels: int | None, what: str):
    """UserError unless ``x`` is 4-D channels-last with ``channels`` channels (None: any)."""
    if x.ndim != 4 or (channels is not None and x.shape[3] != channels):
        want = f"(N, H, W, {channels})" if channels is not None else "(N, H, W, C)"
        raise UserError(f"{what} got input of shape {tuple(x.shape)}; expected channels-last {want}")
