"""``build_mlp``: the multilayer perceptron of the vectorized launcher and the tier-parity tests.

Each hidden layer is  Linear -> [BatchNorm1d] -> activation -> [Dropout if p > 0],  and a final
Linear maps to the class logits. With ``init='auto'`` each Linear gets the scheme that suits
the activation after it: Kaiming (He) for the ReLU family, GELU and SiLU (gain sqrt(2/(1+a^2))
for a leaky slope a), Xavier (Glorot) for tanh, sigmoid and linear units; the output layer is
Xavier.
"""
from __future__ import annotations

from common.errors import UserError
from vectorized.activations import ACTIVATION_NAMES, get_activation
from vectorized.init import default_gain
from vectorized.layers import BatchNorm1d, Dropout, Linear
from vectorized.module import Sequential

_XAVIER_ACTIVATIONS = ("tanh", "sigmoid", "linear", "identity")


def auto_init(activation: str) -> str:
    """'kaiming' or 'xavier' for the activation that follows a Linear layer."""
    return "xavier" if activation in _XAVIER_ACTIVATIONS else "kaiming"


def _per_layer(values, n: int, what: str) -> list:
    values = list(values)
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise UserError(f"{what} has {len(values)} entries for {n} hidden layers; give 1 or {n}")
    return values


def build_mlp(input_dim: int, num_classes: int, hidden_sizes, activations=("relu",), dropout=(0.0,),
              batchnorm: bool = False, bn_momentum: float = 0.1, init: str = "auto",
              leaky_slope: float = 0.01) -> Sequential:
    """A Sequential MLP: (N, input_dim) -> logits (N, num_classes).

    ``activations`` and ``dropout`` hold one entry per hidden layer, or one entry for all.
    """
    hidden_sizes = [int(h) for h in hidden_sizes]
    if any(h < 1 for h in hidden_sizes) or input_dim < 1 or num_classes < 1:
        raise UserError(f"layer sizes must be positive, got input {input_dim}, hidden {hidden_sizes}, "
                        f"classes {num_classes}")
    n = len(hidden_sizes)
    acts = [str(a).lower().replace("-", "_") for a in _per_layer(activations, n, "activations")] if n else []
    drops = [float(p) for p in _per_layer(dropout, n, "dropout")] if n else []
    for a in acts:
        if a not in ACTIVATION_NAMES:
            raise UserError(f"unknown activation {a!r}; choose one of: {', '.join(ACTIVATION_NAMES)}")
    layers, fan_in = [], int(input_dim)
    for width, act, p in zip(hidden_sizes, acts, drops):
        scheme = auto_init(act) if init == "auto" else init
        gain = default_gain(scheme, leaky_slope if act == "leaky_relu" else 0.0)
        layers.append(Linear(fan_in, width, init=scheme, gain=gain))
        if batchnorm:
            layers.append(BatchNorm1d(width, momentum=bn_momentum))
        layers.append(get_activation(act, negative_slope=leaky_slope))
        if p > 0:
            layers.append(Dropout(p))
        fan_in = width
    layers.append(Linear(fan_in, int(num_classes), init="xavier" if init == "auto" else init))
    return Sequential(*layers)
