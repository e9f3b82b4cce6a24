"""A tiny reverse-mode autograd engine on scalars, in the spirit of micrograd.

Every operation makes a new ``Value`` that remembers its inputs and a closure that pushes
its gradient back to them. ``backward()`` orders the graph topologically and runs those
closures from the output to the leaves. The tests and the tutorial use it to re-derive the
hand-written gradients of the scalar network.
"""
from __future__ import annotations

import math


class Value:
    """A float ``data`` with the gradient ``grad`` of the final output with respect to it."""

    def __init__(self, data: float, _children: tuple = (), _op: str = ""):
        self.data = float(data)
        self.grad = 0.0
        self._prev = _children
        self._op = _op
        self._backward = lambda: None

    def _result(self, data: float, children: tuple, op: str, local_grads: tuple) -> "Value":
        """The output node; its backward adds out.grad * d(out)/d(child) into each child (chain rule)."""
        out = Value(data, children, op)

        def _backward():
            for child, local in zip(children, local_grads):
                child.grad += local * out.grad
        out._backward = _backward
        return out

    # ------------------------------------------------------------------ primitives
    def __add__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        return self._result(self.data + other.data, (self, other), "+", (1.0, 1.0))

    def __mul__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        return self._result(self.data * other.data, (self, other), "*", (other.data, self.data))

    def __pow__(self, k: float):
        assert isinstance(k, (int, float)), "only constant exponents"
        return self._result(self.data ** k, (self,), f"**{k}", (k * self.data ** (k - 1),))

    def exp(self):
        e = math.exp(self.data)
        return self._result(e, (self,), "exp", (e,))       # d e^x / dx = e^x, the output itself

    def log(self):
        return self._result(math.log(self.data), (self,), "log", (1.0 / self.data,))

    def tanh(self):
        t = math.tanh(self.data)
        return self._result(t, (self,), "tanh", (1.0 - t * t,))

    def sigmoid(self):
        s = 0.5 * (1.0 + math.tanh(0.5 * self.data))         # = 1 / (1 + e^-x), without overflow
        return self._result(s, (self,), "sigmoid", (s * (1.0 - s),))

    def relu(self):
        return self._result(max(self.data, 0.0), (self,), "relu", (1.0 if self.data > 0 else 0.0,))

    def erf(self):
        d = 2.0 / math.sqrt(math.pi) * math.exp(-self.data ** 2)
        return self._result(math.erf(self.data), (self,), "erf", (d,))

    # ------------------------------------------------------------------ built from the primitives
    def __neg__(self):              return self * -1.0
    def __sub__(self, other):       return self + (-other)
    def __truediv__(self, other):   return self * other ** -1.0
    def __radd__(self, other):      return self + other
    def __rsub__(self, other):      return (-self) + other
    def __rmul__(self, other):      return self * other
    def __rtruediv__(self, other):  return Value(other) / self

    # ------------------------------------------------------------------ reverse mode
    def backward(self) -> None:
        """Fill ``grad`` of every node that this one depends on.

        Leaves accumulate (+=), like PyTorch: zero them between passes. Intermediate nodes
        are reset here, so a second backward after zeroing the leaves gives the same gradients
        (micrograd keeps the stale interior gradients and doubles them).
        """
        topo, seen = [], set()

        def build(v):
            if id(v) not in seen:
                seen.add(id(v))
                for child in v._prev:
                    build(child)
                topo.append(v)              # after all of its inputs
        build(self)
        for v in topo:
            if v._prev:
                v.grad = 0.0
        self.grad = 1.0
        for v in reversed(topo):
            v._backward()

    def __repr__(self):
        return f"Value(data={self.data:.6g}, grad={self.grad:.6g})"


# ---------------------------------------------------------------------- the scalar network, re-derived
SQRT_HALF = 1.0 / math.sqrt(2.0)


def activate(z: Value, name: str, leaky_slope: float = 0.01) -> Value:
    """The scalar tier's activations written with Value operations only."""
    if name == "linear":
        return z
    if name == "relu":
        return z.relu()
    if name == "leaky_relu":
        return z.relu() - leaky_slope * (-z).relu()
    if name == "sigmoid":
        return z.sigmoid()
    if name == "tanh":
        return z.tanh()
    if name == "gelu":
        return 0.5 * z * (1.0 + (z * SQRT_HALF).erf())
    raise ValueError(f"unknown activation {name!r}")


def cross_entropy(logits: list[Value], label: int) -> Value:
    """-log softmax(logits)[label], with the max subtracted first (a constant, so no gradient change)."""
    m = max(z.data for z in logits)
    log_sum = sum(((z - m).exp() for z in logits), Value(0.0)).log() + m
    return log_sum - logits[label]


def network_gradients(network, x: list[float], label: int):
    """Rebuild ``network`` (eval mode, no dropout) as a Value graph; return (loss, grads by state name)."""
    params, h = {}, [Value(v) for v in x]
    for name, layer in network.named_layers():
        W = [[Value(w) for w in n.w] for n in layer.neurons]
        b = [Value(n.b) for n in layer.neurons]
        params[f"{name}.weight"], params[f"{name}.bias"] = W, b
        h = [activate(sum((wi * xi for wi, xi in zip(row, h)), bj), layer.activation)
             for row, bj in zip(W, b)]
    loss = cross_entropy(h, label)
    loss.backward()
    grads = {k: [[w.grad for w in row] for row in v] if isinstance(v[0], list) else [p.grad for p in v]
             for k, v in params.items()}
    return loss.data, grads
