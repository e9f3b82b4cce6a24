"""Which PyTorch module each NNOTT layer and loss matches, and with which options.

:data:`TWINS` pairs every layer and loss with its ``torch.nn`` twin and says where they differ
(the conv tier's activations are channels-last). :func:`options_table` reads each class's
constructor, so the table in the tutorial always lists the options the code really takes, with
their defaults. ``tests/test_options_parity.py`` runs them against PyTorch.
"""
from __future__ import annotations

import inspect

import convolutional as C
from vectorized import activations as A
from vectorized import losses as L
from vectorized.layers import BatchNorm1d

#: (NNOTT class, PyTorch module, note)
TWINS = [
    (C.Conv2D, "nn.Conv2d", "(N, H, W, C) in and out; padding also F.pad's (left, right, top, bottom)"),
    (C.DepthwiseConv2D, "nn.Conv2d(C, C, k, groups=C)", "channels-last"),
    (C.PointwiseLinear, "nn.Linear on the channel axis", "a 1x1 convolution of (N, H, W, C)"),
    (C.Linear, "nn.Linear", "any leading dims (..., in_features)"),
    (C.MaxPool2D, "nn.MaxPool2d", "channels-last"),
    (C.AvgPool2D, "nn.AvgPool2d", "channels-last"),
    (C.GlobalAvgPool2D, "nn.AdaptiveAvgPool2d(1) + flatten", "keepdims=True keeps (N, 1, 1, C)"),
    (C.AdaptiveAvgPool2D, "nn.AdaptiveAvgPool2d", "channels-last"),
    (C.BatchNorm2D, "nn.BatchNorm2d", "channels-last"),
    (BatchNorm1d, "nn.BatchNorm1d", "(N, C) or (N, C, L)"),
    (C.LayerNorm2D, "nn.LayerNorm(C) on (N, H, W, C)", "over the channels of each position"),
    (C.Dropout, "nn.Dropout", ""),
    (C.Flatten, "torch.flatten(x, 1) of NCHW", "C, H, W order"),
    (C.ReLU, "nn.ReLU", ""),
    (C.ReLU6, "nn.ReLU6", ""),
    (C.LeakyReLU, "nn.LeakyReLU", ""),
    (C.ELU, "nn.ELU", ""),
    (A.PReLU, "nn.PReLU", "per-channel slope on the last axis of (N, H, W, C)"),
    (C.GELU, "nn.GELU", ""),
    (C.SiLU, "nn.SiLU", ""),
    (A.Mish, "nn.Mish", ""),
    (A.Softplus, "nn.Softplus", ""),
    (A.Hardswish, "nn.Hardswish", ""),
    (A.Hardsigmoid, "nn.Hardsigmoid", ""),
    (C.Sigmoid, "nn.Sigmoid", ""),
    (C.Tanh, "nn.Tanh", ""),
    (C.Softmax, "nn.Softmax", "axis= for dim="),
    (A.LogSoftmax, "nn.LogSoftmax", ""),
    (L.CrossEntropyLoss, "nn.CrossEntropyLoss", "logits (N, K) or (N, K, d1, ...)"),
    (L.MSELoss, "nn.MSELoss", ""),
    (L.L1Loss, "nn.L1Loss", ""),
    (L.HuberLoss, "nn.HuberLoss", ""),
    (L.BCEWithLogitsLoss, "nn.BCEWithLogitsLoss", ""),
]

def options(cls) -> list[str]:
    """``name=default`` for each keyword of ``cls``'s constructor (required ones by name alone); a
    star marks NNOTT's own (the weight-initialisation scheme ``init`` and its ``gain``)."""
    out = []
    for name, p in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        own = name == "gain" or (name == "init" and isinstance(p.default, str))
        mark = "*" if own else ""
        out.append(f"{name}{mark}" if p.default is inspect.Parameter.empty else f"{name}{mark}={p.default!r}")
    return out


def options_table() -> str:
    """The markdown table: layer, its options with defaults, PyTorch's module, notes."""
    rows = ["| NNOTT | options (defaults) | PyTorch | notes |", "|---|---|---|---|"]
    for cls, torch_name, note in TWINS:
        opts = ", ".join(f"`{o}`" for o in options(cls)) or "none"
        rows.append(f"| `{cls.__name__}` | {opts} | `{torch_name}` | {note} |")
    return "\n".join(rows)
