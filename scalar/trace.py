"""Trace mode: one sample through the network, printed layer by layer.

Forward: each layer's input summary, then each neuron's z = w.x + b and activation a = f(z).
Backward: each neuron's delta = dL/da * f'(z), and the numbered order in which the
gradients accumulate (``2.bias[0] += delta``, ``2.weight[0,:] += delta * x``).
"""
from __future__ import annotations

from scalar.layer import DropoutLayer
from scalar.losses import LOSSES, softmax


def _num(v: float) -> str:
    return f"{v:+.4f}"


def _vec(values, limit: int) -> str:
    shown = ", ".join(_num(v) for v in values[:limit])
    return f"[{shown}{', ...' if len(values) > limit else ''}]"


def _summary(x: list[float]) -> str:
    nonzero = sum(1 for v in x if v != 0.0)
    return (f"{len(x)} values  min {min(x):+.4f}  max {max(x):+.4f}  mean {sum(x) / len(x):+.4f}  "
            f"nonzero {nonzero}")


def trace(network, x: list[float], target, max_neurons: int = 4, loss: str = "cross_entropy",
          training: bool = False, print_fn=print) -> str:
    """Run one sample forward and backward, printing every step; returns the text.

    The network's gradients are zeroed first and hold this sample's gradients afterwards.
    ``max_neurons`` limits how many neurons per layer are shown. ``training=True`` applies dropout.
    """
    lines = []
    out = lines.append
    names = {id(layer): name for name, layer in network.named_layers()}
    network.train(training)
    network.zero_grad()

    out(f"TRACE one sample, target {target}, {'training' if training else 'eval'} mode, "
        f"showing up to {max_neurons} neurons per layer")
    out("")
    out("FORWARD")
    h = x
    for layer in network.layers:
        if isinstance(layer, DropoutLayer):
            h = layer.forward(h)
            if layer.mask is None:
                out(f"dropout p={layer.p}: off in eval mode, the input passes through")
            else:
                dropped = sum(1 for m in layer.mask if m == 0.0)
                out(f"dropout p={layer.p}: {dropped} of {len(h)} inputs zeroed, "
                    f"survivors scaled by 1/(1-p) = {1 / (1 - layer.p):.4f}")
            continue
        name = names[id(layer)]
        out(f"layer {name}  {layer.num_inputs} -> {len(layer.neurons)}  ({layer.activation})")
        out(f"  input x: {_summary(h)}")
        h = layer.forward(h)
        for j, n in enumerate(layer.neurons[:max_neurons]):
            out(f"  neuron {j:>3}: z = w.x + b = {_num(n.z - n.b)} {_num(n.b)} = {_num(n.z)}"
                f"   a = {n.activation.name}(z) = {_num(n.a)}")
        if len(layer.neurons) > max_neurons:
            out(f"  ... {len(layer.neurons) - max_neurons} more neurons")
    loss_value, grad = LOSSES[loss](h, target)
    out(f"logits {_vec(h, 10)}")
    if loss == "cross_entropy":
        out(f"softmax p {_vec(softmax(h), 10)}")
    out(f"loss ({loss}) = {loss_value:.6f}")
    out(f"dL/dlogits {_vec(grad, 10)}" + ("   (= p - onehot(target))" if loss == "cross_entropy" else ""))
    out("")

    out("BACKWARD (gradients accumulate in this order)")
    step = 0
    for i in reversed(range(len(network.layers))):
        layer = network.layers[i]
        if isinstance(layer, DropoutLayer):
            grad = layer.backward(grad)
            out(f"dropout p={layer.p}: " + ("passes the gradient through" if layer.mask is None
                                              else "gradient multiplied by the forward pass's mask"))
            continue
        name = names[id(layer)]
        out(f"layer {name}  dL/da {_vec(grad, max_neurons)}")
        grad_in = layer.backward(grad, input_grad=i > 0)
        for j, n in enumerate(layer.neurons):
            step += n.delta != 0.0                       # numbered over all neurons, shown or not
            if j >= max_neurons:
                continue
            dfdz = n.activation.df(n.z)
            if n.delta == 0.0:
                out(f"  neuron {j:>3}: delta = {_num(grad[j])} * f'(z) {_num(dfdz)} = 0   (nothing accumulates)")
                continue
            out(f"  neuron {j:>3}: delta = dL/da * f'(z) = {_num(grad[j])} * {_num(dfdz)} = {_num(n.delta)}")
            out(f"       [{step}] {name}.bias[{j}] += {_num(n.delta)}   "
                f"{name}.weight[{j},:] += delta * x   (first terms {_vec([n.delta * v for v in n.x], 3)})")
        if len(layer.neurons) > max_neurons:
            out(f"  ... {len(layer.neurons) - max_neurons} more neurons, same pattern")
        if grad_in is None:
            out("  dL/dx of the first layer is not needed: backward stops here")
        else:
            out(f"  dL/dx = sum_j delta_j * w_j = {_vec(grad_in, max_neurons)}")
            grad = grad_in
    network.train()
    text = "\n".join(lines)
    if print_fn is not None:
        print_fn(text)
    return text
