"""The engine's passes over a whole model: what a training step may skip, and in which order to run.

* **No gradient for the images.** A training step needs every parameter's gradient, not dL/dx of
  the model's input (PyTorch computes none for an input that does not require it).
  :func:`training_backward` finds the model's first layer with parameters (through containers
  that run their children in order, over layers that only reorder values) and, for that one
  backward pass, lets a Linear or a convolution leave dL/dx out: for a convolution, a whole
  product and its col2im.
* **ReLU after max-pool.** In a Sequential, a ReLU listed directly before a MaxPool2D runs after
  it: max(relu(a), relu(b)) = relu(max(a, b)), and in backward the gradient reaches the window's
  first maximum either way when that maximum is positive, and no input at all when it is not. The
  ReLU then touches the pooled values only, a quarter of them behind a 2x2 pool.
* **Evaluation mode.** The outermost eval-mode forward of a Sequential or a Network opens an
  inference pass (:mod:`engine.inference`): BatchNorm2D folded into the convolution before it,
  ReLUs in place.
* **How to share the cores** (:func:`engine.parallel.choose_parallelism`), from the forward
  FLOPs of a batch, once before training.
"""
from __future__ import annotations

import weakref

from convolutional.architectures.base import Network
from convolutional.conv import Conv2D
from convolutional.layout import Flatten as ChannelsFirstFlatten
from convolutional.layout import ToChannelsLast
from convolutional.pooling import MaxPool2D
from engine.inference import inference_pass
from engine.parallel import choose_parallelism
from vectorized.activations import ReLU
from vectorized.layers import Linear
from vectorized.module import Sequential, tracing
from vectorized.rnn import RecurrentBase

_skip_input_grad = weakref.WeakSet()  # layers whose dL/dx nobody needs in the running backward pass


def skips_input_grad(layer) -> bool:
    """Whether ``layer`` may return None instead of dL/dx in the backward pass now running."""
    return layer in _skip_input_grad


def entry_layer(model):
    """The first layer to see the model's input, if it can leave dL/dx out (a Linear or a
    non-depthwise convolution), else None (a residual block, for one, needs its input gradient
    for the shortcut)."""
    keep_looking = object()

    def walk(layer):
        if isinstance(layer, (Sequential, Network)):
            for child in layer.children():
                found = walk(child)
                if found is not keep_looking:
                    return found
            return keep_looking
        if isinstance(layer, (ToChannelsLast, ChannelsFirstFlatten)):
            return keep_looking
        if isinstance(layer, Linear) or (isinstance(layer, Conv2D) and not layer.depthwise):
            return layer
        return None

    found = walk(model)
    return None if found is keep_looking else found


def training_backward(model, grad_out) -> None:
    entry = entry_layer(model)
    if entry is None:
        model.backward(grad_out)
        return
    _skip_input_grad.add(entry)
    try:
        model.backward(grad_out)
    finally:
        _skip_input_grad.discard(entry)


def prepare_training(model, batch_forward_flops) -> None:
    """A recurrent model runs many small products one after another (one per time step): one BLAS
    thread each ("blocks"); BLAS's own threads would spend more time meeting than working."""
    if any(isinstance(m, RecurrentBase) for m in model.modules()):
        choose_parallelism(0, mode="blocks")
    else:
        choose_parallelism(batch_forward_flops)


def run_order(layers: list) -> list:
    """``layers`` in the order to run them: a ReLU directly before a MaxPool2D moves after it
    (listed order while ``summary()`` traces shapes)."""
    if tracing():
        return layers
    order = list(layers)
    for i in range(len(order) - 1):
        if type(order[i]) is ReLU and isinstance(order[i + 1], MaxPool2D):
            order[i], order[i + 1] = order[i + 1], order[i]
    return order


def sequential_forward(self, x):
    with inference_pass(self):  # in evaluation mode: BatchNorm2D folded into convolutions
        for layer in run_order(list(self.children())):
            x = layer(x)
    return x


def network_forward(self, x):
    with inference_pass(self):
        for child in self.children():
            x = child(x)
    return x


def sequential_backward(self, grad_out):
    for layer in reversed(run_order(list(self.children()))):
        grad_out = layer.backward(grad_out)
    return grad_out


REPLACEMENTS = [(Sequential, "forward", sequential_forward), (Sequential, "backward", sequential_backward),
                (Network, "forward", network_forward)]
HOOKS = {"training_backward": training_backward, "prepare_training": prepare_training}
