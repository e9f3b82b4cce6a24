"""Moving an MLP between the tiers: the scalar Network and the vectorized Sequential, same weights.

Weights travel under the vectorized MLP's names ('0.weight' (out, in), '0.bias' (out,), ...).
This sits above both tiers: the scalar tier never imports the vectorized one.
"""
from __future__ import annotations

import numpy as np

from common.errors import UserError
from scalar.io import state_arrays
from scalar.network import Network
from vectorized.mlp import build_mlp

_VECTORIZED_NAMES = {"ReLU": "relu", "LeakyReLU": "leaky_relu", "Sigmoid": "sigmoid", "Tanh": "tanh",
                     "GELU": "gelu", "Identity": "linear"}


def to_vectorized(network: Network, dtype=np.float64):
    """The same MLP as a vectorized ``Sequential`` (Linear, activation, [Dropout], ...).

    float64 by default, so its outputs equal the scalar network's to rounding.
    """
    c = network.config
    model = build_mlp(c["input_size"], c["num_classes"], c["hidden_sizes"], c["activations"], c["dropouts"])
    model.astype(dtype)
    # the scalar tier's float64 weights, rounded on purpose when ``dtype`` is float32
    model.load_state_dict({k: v.astype(dtype) for k, v in state_arrays(network).items()})
    return model


def from_vectorized(model, seed: int = 0) -> Network:
    """A scalar Network with the weights of a vectorized MLP built by ``build_mlp`` (no batch norm)."""
    linears, activations, dropouts = [], [], []
    for layer in model:
        kind = type(layer).__name__
        if kind == "Linear":
            linears.append(layer)
            activations.append("linear")
            dropouts.append(0.0)
        elif kind in _VECTORIZED_NAMES and linears:
            if kind == "LeakyReLU" and layer.negative_slope != 0.01:
                raise UserError("the scalar tier's leaky_relu has slope 0.01; "
                                f"this model uses {layer.negative_slope}")
            if kind == "GELU" and layer.approximate != "none":
                raise UserError("the scalar tier has the exact GELU only, not approximate='tanh'")
            activations[-1] = _VECTORIZED_NAMES[kind]
        elif kind == "Dropout" and linears:
            dropouts[-1] = layer.p
        else:
            raise UserError(f"cannot turn a {kind} layer into the scalar tier (Linear, activations "
                            "and Dropout only)")
    if activations[-1] != "linear":
        raise UserError("the model must end with a Linear layer that gives the logits")
    net = Network(linears[0].in_features, linears[-1].out_features,
                  [lin.out_features for lin in linears[:-1]], activations[:-1] or "relu",
                  dropouts[:-1] or 0.0, seed=seed)
    net.load_state_dict(model.state_dict())
    return net
