"""Inference passes: BatchNorm folded into the convolution before it, at evaluation time.

In evaluation mode BatchNorm2D uses its running statistics, so it is a fixed map per channel,
y = z·s + t with s = γ / √(σ² + ε) and t = β − μ·s. When z is a convolution's output,
z = W ∗ x + b, the two are one convolution:

    y = (W·s) ∗ x + (b − μ)·s + β  =  W' ∗ x + b'

(each output channel o of W scaled by s[o]). The fast engine then runs the convolution with W'
and b' and the BatchNorm2D as the identity: one pass over the activations fewer per pair.

**Which pairs.** Only where the model's structure makes it certain that the BatchNorm2D's input
is the convolution's output and nothing else sees that output: neighbours in a container that
runs its children one after another (a Sequential, or a Network that keeps the base class's
``forward``), and the pairs a block's ``forward`` is known to make (:data:`BLOCK_PAIRS`). A
layer that appears twice in the model, a BatchNorm2D in training mode or without running
statistics, and a convolution with another padding mode than zeros are left alone.

**When.** With ``tuning.FOLD_BATCHNORM`` on, the outermost eval-mode forward of a Sequential or a
Network (:func:`inference_pass`) walks the model once, marks the pairs on their layers for the
length of that call, and takes each pair's W' and b' from a cache. What the walk finds is kept
until a module's children change, so a forward after the first costs no walk. A cache entry is used only
while every array it was made from is the same object holding the same values (an exact
comparison with a copy), so an optimizer step, ``load_state_dict`` or a training-mode forward
(running statistics) refreshes it. The model's parameters and buffers are never written:
``state_dict()`` and checkpoints hold the unfolded weights.

**Activations in place.** In the same pass a ReLU or ReLU6 whose input is certainly a fresh array
that nothing else reads (it follows a convolution, a BatchNorm2D or a Linear layer in a container
that runs its children in order, or a block's code says so: :data:`BLOCK_INPLACE`) overwrites its
input instead of writing a new array (``tuning.INPLACE_ACTIVATIONS``). Its backward still works:
relu(x) > 0 exactly where x > 0, and 0 < relu6(x) < 6 exactly where 0 < x < 6.

**Layer scales.** A ConvNeXt block at evaluation time multiplies its last Linear layer's output by
the layer scale γ per channel; :mod:`engine.blocks` folds γ into that layer instead
(W' = γ[:, None]·W, b' = γ·b, from :func:`scaled_linear`, kept and checked like the pairs above)
where the activations are large next to the weights.

**Backward after an eval pass** (gradients in evaluation mode) stays exact: the folded convolution
gets dL/dW' and dL/db' from its own backward, and :func:`add_conv_grads` turns them into the
gradients of W, b, γ and β: dL/dW = dL/dW'·s, dL/db = dL/db'·s, dL/dβ = dL/db', and
dL/dγ = (Σ g·z − μ Σ g)/√(σ² + ε) with Σ g·z = ⟨W[o], dL/dW'[o]⟩ + b·Σ g (the output channel's
weights against its weight gradient), while the BatchNorm2D passes the gradient through.
"""
from __future__ import annotations

import threading
import weakref
from collections import Counter
from contextlib import contextmanager
from itertools import pairwise

from common.backend import xp
from convolutional.architectures.base import Network
from convolutional.blocks import BasicBlock
from convolutional.conv import Conv2D
from convolutional.norm import BatchNorm2D
from convolutional.pooling import MaxPool2D
from engine import tuning
from engine.arrays import relu_into
from vectorized.activations import ReLU, ReLU6
from vectorized.layers import Linear
from vectorized.module import Sequential, structure_version

#: Blocks with their own ``forward`` whose code feeds a convolution straight into a BatchNorm2D
#: and uses the convolution's output nowhere else: (convolution, batch norm) attribute names.
BLOCK_PAIRS = {BasicBlock: (("conv1", "bn1"), ("conv2", "bn2"))}

#: Blocks whose code gives these activations a fresh array that nothing else reads:
#: (the layer that makes that array, or None for the block's own arithmetic; the activation).
BLOCK_INPLACE = {BasicBlock: (("bn1", "relu"), (None, "relu_out"))}
INPLACE = (ReLU, ReLU6)        # activations that may overwrite their input (engine.activations)
PRODUCERS = (Conv2D, BatchNorm2D, Linear)  # layers whose output is a new array that only the next layer reads

_pass = threading.local()                 # .depth: inference passes open on this thread
_cache = weakref.WeakKeyDictionary()      # convolution -> its Folded, kept across passes
_layouts = weakref.WeakKeyDictionary()    # model -> (structure version, pair candidates, activation candidates)
_scaled = weakref.WeakKeyDictionary()     # Linear -> its ScaledLinear (a layer scale folded in)


class Folded:
    """W', b' of one (convolution, BatchNorm2D) pair, and the arrays they were made from."""

    def __init__(self, conv, bn):
        self.bn = bn
        self.sources = _sources(conv, bn)
        self.copies = [a.copy() for a in self.sources]
        w, b = conv.weight.data, None if conv.bias is None else conv.bias.data
        self.inv_std = 1 / xp.sqrt(bn.running_var + bn.eps)
        self.scale = self.inv_std * bn.weight.data if bn.affine else self.inv_std
        self.centred_bias = -bn.running_mean if b is None else b - bn.running_mean
        shift = self.centred_bias * self.scale
        self.weight = (w * self.scale.reshape(-1, 1, 1, 1)).astype(w.dtype)
        self.bias = (shift + bn.bias.data if bn.affine else shift).astype(w.dtype)

    def fresh(self, conv, bn) -> bool:
        """Made from these very arrays, holding the same values as when it was made."""
        return bn is self.bn and _unchanged(_sources(conv, bn), self.sources, self.copies)


def _unchanged(sources, made_from, copies) -> bool:
    """``sources`` are the very arrays ``made_from`` (the same objects) and still hold the values
    ``copies`` took of them: the exact check behind every cached fold."""
    return (len(sources) == len(made_from) and all(a is b for a, b in zip(sources, made_from))
            and all(a.dtype == c.dtype and bool(xp.array_equal(a, c)) for a, c in zip(sources, copies)))


def _sources(conv, bn) -> list:
    arrays = [conv.weight.data, bn.running_mean, bn.running_var]
    if conv.bias is not None:
        arrays.append(conv.bias.data)
    if bn.affine:
        arrays += [bn.weight.data, bn.bias.data]
    return arrays


def _runs_children_in_order(module) -> bool:
    return (isinstance(module, Sequential) and type(module).forward is Sequential.forward) or \
        (isinstance(module, Network) and type(module).forward is Network.forward)


def _candidates(model):
    """The pairs and the (producer, activation) neighbours that the model's structure allows, before
    the checks that depend on modes and buffers. Read from the model's modules, how often each
    appears, and the children of every container that runs them in order."""
    modules = list(model.modules())
    seen = Counter(id(m) for m in modules)
    runs = [list(m.children()) for m in modules if _runs_children_in_order(m)]
    pairs = [pair for children in runs for pair in pairwise(children)]
    acts = [(before, act) for children in runs
            for before, act, after in zip(children, children[1:], children[2:] + [None])
            if isinstance(before, PRODUCERS) and not isinstance(after, MaxPool2D)]
    for module in modules:
        pairs += [(getattr(module, a), getattr(module, b)) for a, b in BLOCK_PAIRS.get(type(module), ())]
        acts += [(None if before is None else getattr(module, before), getattr(module, name))
                 for before, name in BLOCK_INPLACE.get(type(module), ())]
    pairs = [(conv, bn) for conv, bn in pairs if isinstance(conv, Conv2D) and type(bn) is BatchNorm2D
             and seen[id(conv)] == seen[id(bn)] == 1]
    acts = [(before, act) for before, act in acts if type(act) in INPLACE and seen[id(act)] == 1]
    return pairs, acts


def _structure(model):
    """:func:`_candidates` of ``model``, kept until any module's children change
    (``vectorized.module.structure_version``): an eval forward then costs no walk of the model."""
    version = structure_version()
    entry = _layouts.get(model)
    if entry is None or entry[0] != version:
        entry = _layouts[model] = (version, *_candidates(model))
    return entry[1], entry[2]


def conv_bn_pairs(model) -> list:
    """(convolution, BatchNorm2D) pairs of ``model`` that may be folded now (see the module's notes)."""
    return [(conv, bn) for conv, bn in _structure(model)[0]
            if conv.padding_mode == "zeros" and conv.out_channels == bn.num_features
            and not bn.training and bn.track_running_stats and bn.running_mean is not None]


def folded(conv, bn) -> Folded:
    """The cached W', b' of the pair, made again when any array it came from changed."""
    entry = _cache.get(conv)
    if entry is None or not entry.fresh(conv, bn):
        entry = _cache[conv] = Folded(conv, bn)
    return entry


def inplace_activations(model) -> list:
    """(producer, activation) for the ReLU and ReLU6 layers of ``model`` (in evaluation mode) that
    may overwrite their input: after a convolution, a BatchNorm2D or a Linear layer (the producer,
    whose output is a new array) among children run in order (not before a MaxPool2D, which the
    engine may run first), and the :data:`BLOCK_INPLACE` names (producer None where the block
    makes the input itself)."""
    return [(before, act) for before, act in _structure(model)[1] if not act.training]


@contextmanager
def inference_pass(model):
    """Around an eval-mode forward of ``model``: the folded pairs and the in-place activations are
    marked on their layers for the length of the call (the outermost call only; nested containers
    run inside it)."""
    depth = getattr(_pass, "depth", 0)
    if depth or model.training:
        yield
        return
    pairs = conv_bn_pairs(model) if tuning.FOLD_BATCHNORM else []
    acts = inplace_activations(model) if tuning.INPLACE_ACTIVATIONS else []
    for conv, bn in pairs:
        conv.inference_fold = folded(conv, bn)
        object.__setattr__(bn, "folded_into", conv)  # a mark, not a child: the model's structure stays as it is
    for _before, act in acts:
        act.inference_inplace = True
    fused = fusable_activations(pairs, acts) if tuning.FUSE_ACTIVATIONS else []
    for conv, act in fused:
        conv.inference_post, act.inference_absorbed = POST_OPS[type(act)], True
    _pass.depth = depth + 1
    try:
        yield
    finally:
        _pass.depth = depth
        for conv, bn in pairs:
            conv.inference_fold = None
            object.__setattr__(bn, "folded_into", None)
        for _before, act in acts:
            act.inference_inplace = False
        for conv, act in fused:
            conv.inference_post, act.inference_absorbed = None, False


#: The in-place maps a convolution applies for the activation fused into it.
POST_OPS = {ReLU: lambda a: relu_into(a, a), ReLU6: lambda a: xp.clip(a, 0, 6, out=a)}


def _fusable(conv) -> bool:
    """A convolution whose path can apply an activation to each block while it is in cache: a
    depthwise one, or a 1x1 stride-1 unpadded one (one matrix product)."""
    return conv.padding_mode == "zeros" and (
        conv.depthwise or (conv.groups == 1 and conv.kernel_size == (1, 1) and conv.stride == (1, 1)
                           and conv.dilation == (1, 1) and not any(conv.pads)))


def fusable_activations(pairs, acts) -> list:
    """(convolution, activation) for the in-place activations whose input is the output of a
    convolution that can apply them itself (:func:`_fusable`), directly or through a BatchNorm2D
    folded into it in this pass."""
    folded_bn = {id(bn): conv for conv, bn in pairs}
    found = []
    for before, act in acts:
        conv = before if isinstance(before, Conv2D) else folded_bn.get(id(before))
        if conv is not None and _fusable(conv):
            found.append((conv, act))
    return found


def fused_activation(conv):
    """The in-place map of the activation fused into this convolution in this pass, or None."""
    return getattr(conv, "inference_post", None)


def absorbed_activation(act) -> bool:
    """Whether the convolution before this activation applied it in this pass."""
    return getattr(act, "inference_absorbed", False) and not act.training


class ScaledLinear:
    """W' = γ[:, None]·W and b' = γ·b of a Linear layer whose output a layer scale γ multiplies
    (ConvNeXt's ``gamma * pwconv2(...)``), and the arrays they were made from; fresh by the same
    exact check as :class:`Folded`."""

    def __init__(self, linear, gamma):
        self.sources = _linear_sources(linear, gamma)
        self.copies = [a.copy() for a in self.sources]
        w = linear.weight.data
        self.weight = (w * gamma.data.reshape(-1, 1)).astype(w.dtype)
        self.bias = None if linear.bias is None else (linear.bias.data * gamma.data).astype(w.dtype)

    def fresh(self, linear, gamma) -> bool:
        return _unchanged(_linear_sources(linear, gamma), self.sources, self.copies)


def _linear_sources(linear, gamma) -> list:
    return [linear.weight.data, gamma.data] + ([] if linear.bias is None else [linear.bias.data])


def scaled_linear(linear, gamma) -> ScaledLinear:
    """The cached γ-scaled weights of ``linear``, made again when any array they came from changed.
    The layer's own parameters are never written."""
    entry = _scaled.get(linear)
    if entry is None or not entry.fresh(linear, gamma):
        entry = _scaled[linear] = ScaledLinear(linear, gamma)
    return entry


def linear_weights(linear):
    """(weight, bias) a Linear layer runs with now: the γ-scaled ones while a block marks it with
    ``inference_scale`` (engine.blocks), else its own."""
    fold = getattr(linear, "inference_scale", None)
    if fold is not None:
        return fold.weight, fold.bias
    return linear.weight.data, None if linear.bias is None else linear.bias.data


def conv_weights(conv):
    """(weight, bias) the convolution runs with now: W' and b' inside an inference pass that folds
    it, else its own (the bias None when it has none). Recorded for its backward pass."""
    fold = getattr(conv, "inference_fold", None)
    conv.ran_folded = fold
    if fold is not None:
        return fold.weight, fold.bias
    return conv.weight.data, None if conv.bias is None else conv.bias.data


def overwrites_input(act) -> bool:
    """Whether the activation may write its output over its input in this pass."""
    return getattr(act, "inference_inplace", False) and not act.training


def absorbed(bn) -> bool:
    """Whether the BatchNorm2D's work was done by the convolution before it in this pass."""
    return getattr(bn, "folded_into", None) is not None and not bn.training


def add_conv_grads(conv, dweight, dbias) -> None:
    """Accumulate the gradients of the weights a convolution ran with into its parameters (and,
    after a folded forward, into its BatchNorm2D's γ and β)."""
    fold = getattr(conv, "ran_folded", None)
    if fold is None:
        conv.weight.grad += dweight
        if conv.bias is not None:
            conv.bias.grad += dbias
        return
    scale = fold.scale
    conv.weight.grad += dweight * scale.reshape(-1, 1, 1, 1)
    if conv.bias is not None:
        conv.bias.grad += dbias * scale
    bn = fold.bn
    if bn.affine:
        w = fold.copies[0]  # the weight W the pair was folded from
        g_z = (w * dweight).reshape(w.shape[0], -1).sum(axis=1)   # sum of g * (W * x) per channel
        bn.weight.grad += (g_z + fold.centred_bias * dbias) * fold.inv_std
        bn.bias.grad += dbias
