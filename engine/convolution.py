"""The fast Conv2D: a plan per call, then the path's forward and backward.

:func:`conv2d_forward` makes the layer's :class:`engine.plan.ConvPlan` and runs the path it
names (:mod:`engine.gather`, :mod:`engine.banded`, or one product for 1×1 layers);
:func:`conv2d_backward` reads the plan back. dX of a stride-1 convolution *is* a convolution: dY,
padded by d·(k-1) - pad, convolved with the kernel flipped in space and with its in/out
channels swapped, through the same forward code; strided and thin layers use col2im
(:mod:`engine.col2im`). The reference Conv2D in :mod:`convolutional.conv` is the oracle.
"""
from __future__ import annotations

from types import SimpleNamespace

from common.backend import xp
from convolutional.conv import Conv2D
from convolutional.geometry import check_nhwc
from engine import tuning
from engine.arrays import channel_map, column_sums, gemm
from engine.banded import banded_forward, banded_input_grad, banded_weight_grad
from engine.col2im import input_grad_by_col2im
from engine.depthwise import depthwise_backward, depthwise_forward
from engine.gather import gather_forward, weight_grad
from engine.inference import add_conv_grads, conv_weights, fused_activation
from engine.plan import Saved, flipped_input, kernel_view, make_plan, wmat
from engine.steps import skips_input_grad
from engine.winograd import winograd_forward, winograd_weight_grad


#: The paths whose products add the bias themselves (the others get it added afterwards).
ADDS_BIAS = ("banded", "pointwise")


def convolve(x, wk, stride, pads, dilation, out_hw, bias=None, post=None):
    """out (N, OH, OW, OC) of channels-last ``x`` and the kernel ``wk`` (kh, kw, C, OC), its plan
    and what backward needs. ``bias`` is added by the banded and pointwise paths only (with their
    products: :data:`ADDS_BIAS`); ``post`` (a fused activation) by the pointwise path only."""
    plan = make_plan(x.shape, wk.shape, stride, pads, dilation, out_hw, x.itemsize)
    saved = Saved()
    if plan.path == "pointwise":
        n, h, w, c = x.shape
        saved.x2 = x.reshape(n * h * w, c)
        return gemm(saved.x2, wmat(wk), bias=bias, then=post).reshape(n, h, w, -1), plan, saved
    if plan.path == "banded":
        return banded_forward(x, wk, plan, saved, bias), plan, saved
    if plan.path == "winograd":
        return winograd_forward(x, wk, plan, saved), plan, saved
    return gather_forward(x, wk, plan, saved), plan, saved


def conv2d_forward(x, weight, bias, stride, pads, dilation, out_hw, post=None):
    """x: (N, H, W, C), weight: (OC, C, kh, kw), groups=1 -> out: (N, OH, OW, OC), cache. ``post``: an
    in-place activation fused into the layer (engine.inference), applied to the output."""
    wk = kernel_view(weight)
    out, plan, saved = convolve(x, wk, stride, pads, dilation, out_hw, bias, post)
    if bias is not None and plan.path not in ADDS_BIAS:
        out2 = out.reshape(-1, out.shape[3])
        channel_map(xp.add, out2, bias, out2)
    if post is not None and plan.path != "pointwise":
        post(out)
    cache = SimpleNamespace(wk=wk, plan=plan, saved=saved, x_shape=x.shape, has_bias=bias is not None)
    return out, cache


def conv2d_backward(dy, cache, input_grad: bool = True):
    """dy: (N, OH, OW, OC) -> dx (N, H, W, C) (None, not computed, unless ``input_grad``),
    dweight (OC, C, kh, kw), dbias (OC,) (None without a bias)."""
    plan, saved, wk = cache.plan, cache.saved, cache.wk
    dbias = None  # the banded product computes it; the other paths sum dY below
    if plan.path == "pointwise":
        c, oc = wk.shape[2:]
        dy2 = dy.reshape(-1, oc)
        dwt = gemm(dy2.T, saved.x2).reshape(oc, 1, 1, c)
        dx = gemm(dy2, xp.ascontiguousarray(wmat(wk).T)).reshape(cache.x_shape) if input_grad else None
    else:
        dy = xp.ascontiguousarray(dy)
        if plan.path == "banded":
            dwt, dbias = banded_weight_grad(dy, wk.shape, plan, saved, cache.has_bias)
        elif plan.path == "winograd" and tuning.WINOGRAD_WEIGHT_GRAD:
            dwt = winograd_weight_grad(dy, wk.shape, plan, saved)
        else:
            dwt = weight_grad(dy, wk.shape, plan, saved)
        if not input_grad:
            dx = None
        elif plan.path == "banded":
            dx = banded_input_grad(dy, wk.shape, plan, saved, cache.x_shape)
        elif plan.stride == (1, 1) and plan.path != "columns":
            dx = input_grad_by_flipped_conv(dy, wk, plan, cache.x_shape)
        else:
            dx = input_grad_by_col2im(dy, wk, plan, cache.x_shape)
    if cache.has_bias and dbias is None:
        dbias = column_sums(dy.reshape(-1, dy.shape[3]))
    return dx, dwt.transpose(0, 3, 1, 2), dbias


def input_grad_by_flipped_conv(dy, wk, plan, x_shape):
    """Stride 1: dX = dY (padded by d(k-1) - pad) convolved with the flipped, channel-swapped kernel."""
    flipped = xp.ascontiguousarray(wk[::-1, ::-1].transpose(0, 1, 3, 2))  # (kh, kw, OC, C)
    dy, pads = flipped_input(dy, plan.kernel, plan.dilation, plan.pads, plan.out_hw)
    dx, _plan, _saved = convolve(dy, flipped, (1, 1), pads, plan.dilation, x_shape[1:3])
    return dx


# ------------------------------------------------------------------------------ the layer
def conv_layer_forward(self, x):
    """Conv2D.forward on the fast kernels: groups=1, depthwise, or one convolution per group.
    A border copied from the input (``padding_mode`` other than 'zeros') and the empty batch run
    the layer's own code."""
    self.on_reference = self.padding_mode != "zeros" or x.shape[0] == 0
    post = fused_activation(self)  # the activation after it, at evaluation (engine.inference)
    if self.on_reference:
        out = Conv2D.forward.reference(self, x)
        return out if post is None else post(out)
    check_nhwc(x, self.in_channels, repr(self).split("\n")[0])
    out_hw = self.output_hw(x.shape[1], x.shape[2])
    weight, bias = conv_weights(self)  # a BatchNorm2D folded in, in an inference pass (engine.inference)
    geometry = (self.stride, self.pads, self.dilation, out_hw)
    if self.depthwise:
        out, self.cache = depthwise_forward(x, weight, bias, *geometry, post=post)
    elif self.groups == 1:
        out, self.cache = conv2d_forward(x, weight, bias, *geometry, post=post)
    else:  # a grouped convolution is `groups` independent convolutions side by side
        cg, og = self.in_channels // self.groups, self.out_channels // self.groups
        outs, self.cache = [], []
        for g in range(self.groups):
            b = None if bias is None else bias[g * og:(g + 1) * og]
            o, cache = conv2d_forward(x[..., g * cg:(g + 1) * cg], weight[g * og:(g + 1) * og], b,
                                      *geometry)
            outs.append(o)
            self.cache.append(cache)
        out = xp.concatenate(outs, axis=3)
        if post is not None:
            post(out)
    return out


def conv_layer_backward(self, grad_out):
    if self.on_reference:
        return Conv2D.backward.reference(self, grad_out)
    input_grad = self.depthwise or not skips_input_grad(self)  # depthwise makes dx and dw in the same passes
    if self.depthwise:
        dx, dw, db = depthwise_backward(grad_out, self.cache)
    elif self.groups == 1:
        dx, dw, db = conv2d_backward(grad_out, self.cache, input_grad)
    else:
        og = self.out_channels // self.groups
        parts = [conv2d_backward(xp.ascontiguousarray(grad_out[..., g * og:(g + 1) * og]), cache, input_grad)
                 for g, cache in enumerate(self.cache)]
        dx = xp.concatenate([p[0] for p in parts], axis=3) if input_grad else None
        dw = xp.concatenate([p[1] for p in parts], axis=0)
        db = None if parts[0][2] is None else xp.concatenate([p[2] for p in parts], axis=0)
    add_conv_grads(self, dw, db)
    return dx


REPLACEMENTS = [(Conv2D, "forward", conv_layer_forward), (Conv2D, "backward", conv_layer_backward)]
