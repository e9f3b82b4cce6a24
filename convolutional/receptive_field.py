"""Receptive fields: how much of the input one output position of a layer can see.

Walking through the layers in the order the forward pass calls them, each window layer
(convolution or pooling) with kernel ``k``, stride ``s`` and dilation ``d`` grows the
receptive field ``r`` and the jump ``j`` (the distance, in input pixels, between two
neighbouring positions of the current feature map):

    k_eff = d (k - 1) + 1          r <- r + (k_eff - 1) j          j <- j s

starting from ``r = 1, j = 1`` at the input. Layers without a window (activations,
normalization, 1x1 convolutions) leave both unchanged. Residual shortcuts (``downsample``,
``shortcut``) run beside the main path, so they are skipped: the main path is the longest.
A global pool or a squeeze-and-excitation gate sees the whole image; the walk stops at
spatial windows, so those are not counted.

    rows = receptive_fields(build_model("lenet", (1, 28, 28), 10), (1, 28, 28))
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SHORTCUTS = ("downsample", "shortcut")


@dataclass(frozen=True)
class WindowLayer:
    """One convolution or pooling layer on the main path, and the receptive field after it."""

    name: str
    kind: str
    kernel: int
    stride: int
    dilation: int
    jump: int       # input pixels between neighbouring outputs of this layer
    field: int      # receptive field of one output of this layer, in input pixels (one axis)


def _window_layers_in_call_order(model, input_shape):
    """Names and modules of the layers with a kernel, in the order one forward pass calls them."""
    order, patched = [], []
    for name, module in model.named_modules():
        if hasattr(module, "kernel_size") and hasattr(module, "stride"):
            def traced(x, _name=name, _module=module, _forward=module.forward):
                order.append((_name, _module))
                return _forward(x)
            module.forward = traced          # an instance attribute hides the class's forward
            patched.append(module)
    was_training = model.training
    try:
        model.eval()
        model(np.zeros((1, *input_shape), dtype=np.float32))
    finally:
        for module in patched:
            del module.forward
        model.train(was_training)
    return order


def receptive_fields(model, input_shape) -> list[WindowLayer]:
    """The receptive field after each window layer of ``model`` (height axis).

    ``input_shape``: one input without the batch axis, e.g. ``(C, H, W)`` for an architecture.
    """
    rows, field, jump = [], 1, 1
    for name, module in _window_layers_in_call_order(model, tuple(input_shape)):
        if any(part in SHORTCUTS for part in name.split(".")):
            continue
        k, s = module.kernel_size[0], module.stride[0]
        d = getattr(module, "dilation", (1, 1))[0]
        field += (d * (k - 1)) * jump
        jump *= s
        rows.append(WindowLayer(name, type(module).__name__, k, s, d, jump, field))
    return rows
