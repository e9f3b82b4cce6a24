"""Whole blocks at evaluation time: ConvNeXt's layer scale folded away, and ConvNeXt and MBConv
blocks on small maps in channel-major order.

**ConvNeXt.** The layer scale folded into the last Linear layer.

The reference block computes y = x + drop_path(γ · pwconv2(h)) with h = GELU(pwconv1(norm(dwconv(x)))):
after the product, a pass that writes γ·branch into a new array and one that adds x. In
evaluation mode drop_path is the identity, and γ · (h Wᵀ + b) = h (γ[:, None]·W)ᵀ + γ·b, so
pwconv2 can run with W' = γ[:, None]·W and b' = γ·b (:func:`engine.inference.scaled_linear`,
cached and checked exactly against the weights it came from; the parameters are never written)
and x is added into its output in place: one pass fewer.

The check reads the C × 4C weights once per forward, and the pass it saves has N·H·W × C
values: the fold is taken when the rows N·H·W are at least ``tuning.LAYER_SCALE_FOLD_ROWS`` times
pwconv2's 4C inputs. Elsewhere the block scales its branch in place and adds x into it (the
reference's numbers, without the new array).

A backward after such a forward stays exact: the branch γ multiplied was not kept, so it is made
again from pwconv2's input (one product) and the reference backward runs.

On small maps (the rule below) dwconv and norm run channel-major too: x is transposed once, dwconv
is the T product below, the LayerNorm's mean and variance over the channels are sums down the
columns of (C, N·H·W), and pwconv1 reads the result transposed in its product.

**MBConv on small maps.** EfficientNet's block is expand (1×1) → depthwise k×k → project (1×1),
each with its BatchNorm folded in (engine.inference). On a small map the depthwise convolution of
one channel is a matrix T (H·W × OH·OW, :func:`engine.depthwise.depthwise_matrices`), so the layer
is a product batched over channels, (C, N, H·W) @ (C, H·W, OH·OW), which wants its input channel
by channel. The 1×1 convolutions give and take that order for free, since a product can read
either operand transposed:

    h  (C, N·H·W)   = W_expand (C, C_in) @ xᵀ            x: (N·H·W, C_in), channels last
    d  (C, N, OH·OW) = h (C, N, H·W) @ T                  one product per channel
    y  (N·OH·OW, C_out) = dᵀ @ W_projectᵀ                 channels last again

(each with its folded bias and activation). The first two run channel block by channel block on
every core (``tuning.CHANNEL_MAJOR_BLOCK_BYTES``), so h stays in the caches. Taken where T holds
a weight in at least one entry in ``tuning.DEPTHWISE_MATRIX_MAX_WASTE`` (on 4×4 maps nearly every
entry does), or else where strips of output rows do, each with its own matrix
(:func:`engine.depthwise.matrix_strips`, ConvNeXt's 16×16 maps). Elsewhere, and in training, the
block runs its layers one by one, and so it does while a summary records every layer's output
shape or while one of its layers has its ``forward`` replaced (a tool watching it). A backward
after such a forward runs the block's forward again layer by layer (their inputs were not
kept), then the reference backward.
"""
from __future__ import annotations

import weakref

import numpy as np

from convolutional.blocks import ConvNeXtBlock, MBConv
from convolutional.conv import Conv2D
from convolutional.norm import LayerNorm2D
from engine import tuning
from engine.arrays import gemm
from engine.depthwise import depthwise_matrices, matrix_strips
from engine.inference import POST_OPS, _unchanged, linear_weights, scaled_linear
from engine.parallel import blocks_of, run_blocks, scratch
from vectorized.module import Sequential, tracing


def convnext_forward(self, x):
    if self.training or self.gamma is None or self.drop_path.training:
        self.ran_eval = False
        return ConvNeXtBlock.forward.reference(self, x)
    channel_major = (_matrix_input(x) and type(self.norm) is LayerNorm2D
                     and _own_forwards(self.dwconv, self.norm, self.pwconv1, self.act)
                     and _strips(self.dwconv, x.shape[1:3]) is not None)
    self.eval_input = x if channel_major else None
    h = _convnext_head(self, x) if channel_major else self.act(self.pwconv1(self.norm(self.dwconv(x))))
    pw = self.pwconv2
    rows = h.size // h.shape[-1]
    self.branch = None
    self.ran_eval = True
    if rows >= tuning.LAYER_SCALE_FOLD_ROWS * pw.in_features:
        pw.inference_scale = scaled_linear(pw, self.gamma)
        try:
            out = pw(h)
        finally:
            pw.inference_scale = None
    else:
        out = pw(h)
        out *= self.gamma.data
    out = self.drop_path(out)  # the identity in evaluation mode
    out += x
    return out


def convnext_backward(self, grad_out):
    if getattr(self, "eval_input", None) is not None:  # dwconv to pwconv1 ran as one: run the layers again
        x, self.eval_input = self.eval_input, None
        ConvNeXtBlock.forward.reference(self, x)
        self.ran_eval = False
    if getattr(self, "ran_eval", False):  # make the unscaled branch again for dL/dγ
        pw = self.pwconv2
        branch = gemm(pw.x, pw.weight.data.T, bias=None if pw.bias is None else pw.bias.data)
        self.branch = branch.reshape(*pw.lead_shape, pw.out_features)
        self.ran_eval = False
    return ConvNeXtBlock.backward.reference(self, grad_out)


#: depthwise convolution -> (the weight its matrices came from, a copy of it, (input size, strips), matrices)
_matrices = weakref.WeakKeyDictionary()


def _matrix_input(x) -> bool:
    """A batch the channel-major paths take: on the CPU, not empty, and not while a summary records
    every layer's output shape (those paths call no layers)."""
    return bool(tuning.DEPTHWISE_MATRIX_MAX_WASTE) and type(x) is np.ndarray and x.shape[0] > 0 and not tracing()


def _own_forwards(*layers) -> bool:
    """No layer's ``forward`` is replaced on the instance (a tool or a user watching its calls,
    such as the receptive-field walk): the channel-major paths would not call it."""
    return not any("forward" in layer.__dict__ for layer in layers)


def _strips(conv, in_hw):
    """The strips of output rows whose matrices the rule lets ``conv`` run as (see the module's notes), or None."""
    if conv.padding_mode != "zeros":
        return None
    return matrix_strips(in_hw, conv.output_hw(*in_hw), conv.stride, conv.pads, conv.dilation, conv.kernel_size,
                         tuning.DEPTHWISE_MATRIX_MAX_WASTE, tuning.DEPTHWISE_STRIP_MIN_PIXELS)


def _depthwise_matrices(conv, weight, in_hw, strips):
    """The strips' matrices of the depthwise convolution ``conv`` run with ``weight`` on inputs of size
    ``in_hw``, kept while ``weight`` is the same array holding the same values (the exact check of
    engine.inference)."""
    entry = _matrices.get(conv)
    if entry is None or entry[2] != (in_hw, strips) or not _unchanged([weight], [entry[0]], [entry[1]]):
        ts = depthwise_matrices(weight, in_hw, conv.output_hw(*in_hw), conv.stride, conv.pads, conv.dilation, strips)
        entry = _matrices[conv] = (weight, weight.copy(), (in_hw, strips), ts)
    return entry[3]


def _depthwise_channel_major(x, conv, weight, bias, act=None, expand=None):
    """d (C, N·OH·OW): the depthwise convolution of x (N, H, W, C_in) as T products (with ``bias`` and
    the in-place ``act``), channel block by channel block on every core. A block's input (its
    channels of all N·H·W pixels) is x's channels transposed, or with ``expand`` = (W, b, act) the
    1×1 convolution W (C, C_in) of x that makes them."""
    n, h, w, c_in = x.shape
    oh, ow = conv.output_hw(h, w)
    strips = _strips(conv, (h, w))
    ts = _depthwise_matrices(conv, weight, (h, w), strips)
    c = weight.shape[0]
    rows = x.reshape(n * h * w, c_in)
    d = np.empty((c, n, oh * ow), dtype=x.dtype)
    blocks = blocks_of(c, n * (h * w + oh * ow) * x.itemsize, tuning.CHANNEL_MAJOR_BLOCK_BYTES)

    def part(c0, c1, buf):
        if expand is None:
            hb = np.ascontiguousarray(rows.T[c0:c1])
        else:
            we, be, expand_act = expand
            hb = np.matmul(we[c0:c1], rows.T, out=scratch(buf, "h", (blocks[0][1], n * h * w), x.dtype)[:c1 - c0])
            hb += be[c0:c1, None]
            if expand_act is not None:
                POST_OPS[type(expand_act)](hb)
        hb, db = hb.reshape(c1 - c0, n, h * w), d[c0:c1]
        for (y0, y1, r0, r1), t in zip(strips, ts):  # output rows y0..y1-1 from input rows r0..r1-1
            np.matmul(hb[:, :, r0 * w:r1 * w], t[c0:c1], out=db[:, :, y0 * ow:y1 * ow])
        if bias is not None:
            db += bias[c0:c1, None, None]
        if act is not None:
            POST_OPS[type(act)](db)

    run_blocks(blocks, part)
    return d.reshape(c, -1)


def _layer_norm_channel_major(d, norm):
    """LayerNorm2D over the channels of d (C, M), in place, a block of columns at a time."""
    c, m = d.shape
    blocks = blocks_of(m, c * d.itemsize, tuning.LAYERNORM_BLOCK_BYTES, tuning.SMALL_PASS_BYTES)
    weight, bias = norm.weight.data[:, None], norm.bias.data[:, None]

    def work(m0, m1, buf):
        db = d[:, m0:m1]
        db -= db.mean(axis=0)
        squares = np.multiply(db, db, out=scratch(buf, "squares", (c, blocks[0][1]), d.dtype)[:, :m1 - m0])
        inv_std = 1 / np.sqrt(squares.mean(axis=0) + norm.eps)
        db *= inv_std
        db *= weight
        db += bias

    run_blocks(blocks, work)
    return d


def _convnext_head(self, x):
    """GELU(pwconv1(norm(dwconv(x)))) with dwconv as T products and the norm channel-major: x is
    transposed once, and pwconv1 reads the normalized values transposed back, in its product."""
    dw = self.dwconv
    d = _depthwise_channel_major(x, dw, dw.weight.data, None if dw.bias is None else dw.bias.data)
    d = _layer_norm_channel_major(d, self.norm)
    w1, b1 = linear_weights(self.pwconv1)
    h = gemm(d.T, w1.T, bias=b1)
    return self.act(h.reshape(*x.shape[:3], -1))


def _stage(stage, depthwise):
    """(convolution, fold, activation or None) of one stage Sequential(conv, BatchNorm2D[, act]) whose
    BatchNorm is folded into the convolution in this pass and whose activation can run in place;
    the convolution a depthwise one or a plain 1×1 one. None otherwise."""
    layers = list(stage.children()) if type(stage) is Sequential else []
    if len(layers) not in (2, 3) or not isinstance(layers[0], Conv2D) or not _own_forwards(stage, *layers):
        return None
    conv, act = layers[0], (layers[2] if len(layers) == 3 else None)
    fold = getattr(conv, "inference_fold", None)
    if fold is None or fold.bn is not layers[1] or (act is not None and (type(act) not in POST_OPS or act.training)):
        return None
    plain = conv.groups == 1 and conv.kernel_size == (1, 1) and conv.stride == (1, 1) and not any(conv.pads)
    if conv.depthwise != depthwise or (not depthwise and not plain) or conv.padding_mode != "zeros":
        return None
    return conv, fold, act


def _channel_major_stages(block, x):
    """(expand or None, depthwise, project) stages of an MBConv in an inference pass when the
    channel-major path applies to input ``x`` (see the module's notes), else None."""
    if block.training or block.stochastic_depth.training or not _matrix_input(x) or not _own_forwards(block.block):
        return None
    stages = list(block.block.children())
    if len(stages) == 2:
        stages = [None, *stages]
    if len(stages) != 3:
        return None
    found = [None if stages[0] is None else _stage(stages[0], False), _stage(stages[1], True),
             _stage(stages[2], False)]
    if (stages[0] is not None and found[0] is None) or None in found[1:] or found[2][2] is not None:
        return None
    return found if _strips(found[1][0], x.shape[1:3]) is not None else None


def _mbconv_channel_major(x, expand, depthwise, project):
    c = depthwise[1].weight.shape[0]
    if expand is not None:
        _conv, fold, act = expand
        expand = (fold.weight.reshape(c, -1), fold.bias, act)
    dw, fold, act = depthwise
    d = _depthwise_channel_major(x, dw, fold.weight, fold.bias, act, expand)
    _conv, fold, _act = project
    out = gemm(d.T, fold.weight.reshape(-1, c).T, bias=fold.bias)
    return out.reshape(*x.shape[:1], *dw.output_hw(*x.shape[1:3]), -1)


def mbconv_forward(self, x):
    stages = _channel_major_stages(self, x)
    self.eval_input = None
    if stages is None:
        return MBConv.forward.reference(self, x)
    out = _mbconv_channel_major(x, *stages)
    self.eval_input = x
    if self.use_res_connect:
        out += x  # stochastic depth is the identity in evaluation mode
    return out


def mbconv_backward(self, grad_out):
    if getattr(self, "eval_input", None) is not None:  # the layers ran as one: run them again, one by one
        x, self.eval_input = self.eval_input, None
        MBConv.forward.reference(self, x)
    return MBConv.backward.reference(self, grad_out)


REPLACEMENTS = [(ConvNeXtBlock, "forward", convnext_forward), (ConvNeXtBlock, "backward", convnext_backward),
                (MBConv, "forward", mbconv_forward), (MBConv, "backward", mbconv_backward)]
