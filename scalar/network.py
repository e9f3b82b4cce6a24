"""Network: input -> hidden layers (each optionally followed by dropout) -> linear output layer.

One sample at a time: ``forward(x)`` takes a list of floats and returns the logits;
``backward(dL/dlogits)`` adds this sample's gradients into every neuron.
"""
from __future__ import annotations

import random
from collections.abc import Sequence

from common.errors import UserError
from scalar.activations import get_activation
from scalar.layer import DropoutLayer, Layer
from scalar.neuron import Neuron


def per_layer(value, count: int, what: str) -> list:
    """One value for every hidden layer: a single value is repeated, a list must have ``count`` entries."""
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if len(values) == 1:
        values = values * count
    if len(values) != count:
        raise UserError(f"{what}: got {len(values)} values for {count} hidden layers")
    return values


class Network:
    """A multilayer perceptron of Neurons.

    ``activations`` and ``dropouts`` are one value for all hidden layers or one per layer.
    The output layer is linear: it returns logits, the loss applies the softmax.
    """

    def __init__(self, input_size: int, num_classes: int, hidden_sizes: Sequence[int] = (256, 128, 64),
                 activations: str | Sequence[str] = "relu", dropouts: float | Sequence[float] = 0.0,
                 seed: int = 0):
        hidden_sizes = [int(h) for h in hidden_sizes]
        if input_size < 1 or num_classes < 1 or any(h < 1 for h in hidden_sizes):
            raise UserError(f"layer sizes must be positive: {input_size}, {hidden_sizes}, {num_classes}")
        activations = per_layer(activations, len(hidden_sizes), "hidden activations")
        dropouts = [float(p) for p in per_layer(dropouts, len(hidden_sizes), "hidden dropout")]
        for name in activations:
            get_activation(name)                         # unknown names fail here, before any work
        self.config = dict(input_size=input_size, num_classes=num_classes, hidden_sizes=hidden_sizes,
                           activations=activations, dropouts=dropouts, seed=seed)
        self.rng = rng = random.Random(seed)            # initial weights, then dropout masks
        self.layers: list[Layer | DropoutLayer] = []
        fan_in = input_size
        for size, activation, p in zip(hidden_sizes, activations, dropouts):
            self.layers.append(Layer.random(fan_in, size, activation, rng))
            if p > 0.0:
                self.layers.append(DropoutLayer(p, rng))
            fan_in = size
        self.layers.append(Layer.random(fan_in, num_classes, "linear", rng))
        self.training = True

    # ------------------------------------------------------------------ computation
    def forward(self, x: list[float]) -> list[float]:
        for layer in self.layers:
            x = layer.forward(x)
        return x

    __call__ = forward

    def backward(self, grad_logits: list[float]) -> None:
        """Backpropagate dL/dlogits from the output layer to the first one, accumulating gradients."""
        grad = grad_logits
        for i in reversed(range(len(self.layers))):
            grad = self.layers[i].backward(grad, input_grad=i > 0)

    def predict(self, x: list[float]) -> int:
        logits = self.forward(x)
        return max(range(len(logits)), key=logits.__getitem__)

    # ------------------------------------------------------------------ parameters
    def dense_layers(self) -> list[Layer]:
        return [layer for layer in self.layers if isinstance(layer, Layer)]

    def neurons(self) -> list[Neuron]:
        return [n for layer in self.dense_layers() for n in layer.neurons]

    def num_parameters(self) -> int:
        return sum(len(n.w) + 1 for n in self.neurons())

    def zero_grad(self) -> None:
        for n in self.neurons():
            n.zero_grad()

    def scale_grads(self, factor: float) -> None:
        """Multiply every accumulated gradient, e.g. by 1/N to turn a batch sum into a mean."""
        for n in self.neurons():
            n.grad_w = [g * factor for g in n.grad_w]
            n.grad_b *= factor

    def train(self, mode: bool = True) -> "Network":
        self.training = mode
        for layer in self.layers:
            if isinstance(layer, DropoutLayer):
                layer.training = mode
        return self

    def eval(self) -> "Network":
        return self.train(False)

    # ------------------------------------------------------------------ state, named like the vectorized MLP
    def named_layers(self) -> list[tuple[str, Layer]]:
        """Each Layer with its index in the equivalent vectorized ``Sequential``.

        The vectorized MLP spells a hidden layer as Linear, activation, [Dropout], so the
        indices run 0, 3, 6, ... with dropout and 0, 2, 4, ... without.
        """
        named, index = [], 0
        for layer in self.layers:
            if isinstance(layer, Layer):
                named.append((str(index), layer))
                index += 2                                # Linear + activation module
            else:
                index += 1                                # Dropout
        return named

    def state_dict(self) -> dict[str, list]:
        """``{'0.weight': rows (out x in), '0.bias': list (out), ...}`` as plain Python lists."""
        state = {}
        for name, layer in self.named_layers():
            state[f"{name}.weight"] = [list(n.w) for n in layer.neurons]
            state[f"{name}.bias"] = [n.b for n in layer.neurons]
        return state

    def grad_dict(self) -> dict[str, list]:
        """The accumulated gradients, with the same names and shapes as ``state_dict()``."""
        grads = {}
        for name, layer in self.named_layers():
            grads[f"{name}.weight"] = [list(n.grad_w) for n in layer.neurons]
            grads[f"{name}.bias"] = [n.grad_b for n in layer.neurons]
        return grads

    def state_shapes(self) -> dict[str, tuple]:
        return {name: (len(v), len(v[0])) if isinstance(v[0], list) else (len(v),)
                for name, v in self.state_dict().items()}

    def load_state_dict(self, state) -> None:
        """Copy weights in by name (nested lists or NumPy arrays); every mismatch is reported at once."""
        own = self.state_shapes()
        problems = [f"missing {k}" for k in own if k not in state]
        problems += [f"unexpected {k}" for k in state if k not in own]
        for k, shape in own.items():
            if k in state and _shape(state[k]) != shape:
                problems.append(f"{k} has shape {_shape(state[k])}, the network needs {shape}")
        if problems:
            raise UserError("weights do not fit this network: " + "; ".join(problems))
        for name, layer in self.named_layers():
            for neuron, row, b in zip(layer.neurons, state[f"{name}.weight"], state[f"{name}.bias"]):
                neuron.w = [float(v) for v in row]
                neuron.b = float(b)
                neuron.zero_grad()

    def __repr__(self):
        return "Network(\n" + "".join(f"  {layer!r}\n" for layer in self.layers) + ")"


def _shape(value) -> tuple:
    if hasattr(value, "shape"):
        return tuple(value.shape)
    value = list(value)
    return (len(value), len(value[0])) if value and hasattr(value[0], "__len__") else (len(value),)
