"""Parameter, Module and Sequential: the one module system of tiers 2 and 3.

Contract (PyTorch-like, with an explicit backward):

* ``forward(x)`` computes the output and caches what ``backward`` needs.
* ``backward(grad_out)`` returns dL/dx and *accumulates* (``+=``) into each ``Parameter.grad``.
* ``state_dict()`` maps dotted names (``features.0.weight``) to host NumPy arrays; parameters
  and buffers (running statistics) both appear, so a checkpoint holds every tensor.
"""
from __future__ import annotations

import math
import warnings
from collections import OrderedDict

import numpy as np

from common.backend import DTYPE, to_device, to_numpy, xp
from common.dispatch import accelerated


def _warn_if_rounded(state, dtypes) -> None:
    """One warning line when loading rounds floating tensors to a less precise model dtype."""
    rounded = {}
    for k, dtype in dtypes.items():
        if k in state:
            source = np.asarray(state[k]).dtype
            if np.issubdtype(source, np.floating) and np.issubdtype(dtype, np.floating) \
                    and np.finfo(source).precision > np.finfo(dtype).precision:
                rounded[(source.name, np.dtype(dtype).name)] = rounded.get((source.name, np.dtype(dtype).name), 0) + 1
    for (source, target), count in rounded.items():
        warnings.warn(f"load_state_dict: {count} {source} tensors rounded to the model's {target}; "
                      f"call model.astype(np.{source}) first to keep every digit", stacklevel=3)


class Parameter:
    """A trainable (or frozen) tensor with its accumulated gradient."""

    __slots__ = ("data", "grad", "trainable")

    def __init__(self, data, trainable: bool = True):
        self.data = data
        self.grad = xp.zeros_like(data)
        self.trainable = trainable

    @property
    def shape(self):
        return self.data.shape

    @property
    def size(self) -> int:
        return int(self.data.size)

    def zero_grad(self) -> None:
        self.grad[...] = 0

    def __repr__(self):
        return f"Parameter(shape={tuple(self.shape)}, dtype={self.data.dtype}, trainable={self.trainable})"


def parameter(host_array, trainable: bool = True) -> Parameter:
    """Make a Parameter from a host (NumPy) array: moved to the active device as float32."""
    return Parameter(to_device(np.asarray(host_array), dtype=DTYPE), trainable)


class Module:
    """Base class. Subclasses set Parameters, buffers and child Modules as attributes."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # ------------------------------------------------------------------ attribute registry
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}.__init__ must call super().__init__() first")
        # A new value for an existing name keeps that name's place (a Sequential's order).
        if not isinstance(value, Module) and self._modules.pop(name, None) is not None:
            structure_changed()
        if not isinstance(value, Parameter):
            self._parameters.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
            structure_changed()
        elif name in self._buffers:
            self._buffers[name] = value
            return
        object.__setattr__(self, name, value)

    def __getattr__(self, name):  # only called when normal lookup fails: buffers live here
        buffers = self.__dict__.get("_buffers")
        if buffers is not None and name in buffers:
            return buffers[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def register_buffer(self, name: str, value) -> None:
        """A non-trainable tensor saved in the state dict (e.g. BatchNorm running statistics)."""
        self._buffers[name] = value

    # ------------------------------------------------------------------ computation
    def forward(self, x):
        raise NotImplementedError

    def backward(self, grad_out):
        raise NotImplementedError

    def __call__(self, x):
        x = self.to_own_dtype(x)
        out = self.forward(x)
        if _SHAPE_LOG is not None:
            _SHAPE_LOG.append((self, tuple(out.shape)))
        return out

    def to_own_dtype(self, x):
        """A floating input of another dtype than this layer's own parameters, cast to theirs: a
        float32 model computes in float32 whatever it is given (``astype`` sets the dtype)."""
        for p in self._parameters.values():
            if x.dtype != p.data.dtype and xp.issubdtype(x.dtype, xp.floating):
                return x.astype(p.data.dtype)
            break
        return x

    # ------------------------------------------------------------------ traversal
    def named_children(self):
        return iter(self._modules.items())

    def children(self):
        return iter(self._modules.values())

    def named_modules(self, prefix: str = ""):
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        return (m for _, m in self.named_modules())

    def named_parameters(self, prefix: str = ""):
        for name, p in self._parameters.items():
            yield (f"{prefix}.{name}" if prefix else name), p
        for name, child in self._modules.items():
            yield from child.named_parameters(f"{prefix}.{name}" if prefix else name)

    def parameters(self, trainable_only: bool = False):
        return [p for _, p in self.named_parameters() if p.trainable or not trainable_only]

    def named_buffers(self, prefix: str = ""):
        for name, b in self._buffers.items():
            yield (f"{prefix}.{name}" if prefix else name), b
        for name, child in self._modules.items():
            yield from child.named_buffers(f"{prefix}.{name}" if prefix else name)

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.size for p in self.parameters(trainable_only))

    # ------------------------------------------------------------------ modes and grads
    def train(self, mode: bool = True):
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.zero_grad()

    def astype(self, dtype):
        """Cast every parameter, gradient and floating buffer (float64 for gradient checks)."""
        for m in self.modules():
            for p in m._parameters.values():
                p.data = p.data.astype(dtype)
                p.grad = p.grad.astype(dtype)
            for name, b in list(m._buffers.items()):
                if b is not None and xp.issubdtype(b.dtype, xp.floating):
                    m._buffers[name] = b.astype(dtype)
        return self

    # ------------------------------------------------------------------ state
    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Every parameter and buffer by dotted name, as host NumPy copies."""
        state = OrderedDict()
        for name, p in self.named_parameters():
            state[name] = np.array(to_numpy(p.data), copy=True)
        for name, b in self.named_buffers():
            state[name] = np.array(to_numpy(b), copy=True)
        return state

    def state_shapes(self) -> "OrderedDict[str, tuple]":
        """Dotted name -> shape, without copying anything to the host."""
        shapes = OrderedDict((n, tuple(p.shape)) for n, p in self.named_parameters())
        shapes.update((n, tuple(b.shape)) for n, b in self.named_buffers())
        return shapes

    def load_state_dict(self, state, strict: bool = True) -> None:
        """Copy tensors in place. Every missing, unexpected or mis-shaped tensor is reported at once.
        Tensors take the model's dtype; rounding float64 into a float32 model warns (one line)."""
        own = self.state_shapes()
        problems = []
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if strict and missing:
            problems.append(f"missing tensors: {', '.join(missing[:10])}" + (" ..." if len(missing) > 10 else ""))
        if strict and unexpected:
            problems.append(f"unexpected tensors: {', '.join(unexpected[:10])}"
                            + (" ..." if len(unexpected) > 10 else ""))
        for k, shape in own.items():
            if k in state and tuple(np.shape(state[k])) != shape:
                problems.append(f"{k}: shape {tuple(np.shape(state[k]))} in the state, {shape} in the model")
        if problems:
            raise ValueError("state dict does not fit the model: " + "; ".join(problems))
        params = dict(self.named_parameters())
        _warn_if_rounded(state, {**{k: p.data.dtype for k, p in params.items()},
                                 **{k: b.dtype for k, b in self.named_buffers()}})
        for name, module in self.named_modules():
            for bname, b in list(module._buffers.items()):
                full = f"{name}.{bname}" if name else bname
                if full in state:
                    module._buffers[bname] = to_device(np.array(state[full], copy=True), dtype=b.dtype)
        for k, p in params.items():
            if k in state:
                p.data = to_device(np.array(state[k], copy=True), dtype=p.data.dtype)
                if p.grad.shape != p.data.shape:
                    p.grad = xp.zeros_like(p.data)

    # ------------------------------------------------------------------ display
    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        if self._modules:
            for name, child in self._modules.items():
                child_repr = repr(child).replace("\n", "\n  ")
                lines.append(f"  ({name}): {child_repr}")
            return "\n".join(lines) + "\n)"
        return lines[0] + ")"

    def _trace(self, input_shape) -> list:
        """(module, output shape) of every module call while a batch of 2 zeros of ``input_shape``
        runs through the model in eval mode (the model's training mode is restored)."""
        global _SHAPE_LOG
        was_training = self.training
        self.eval()
        _SHAPE_LOG = []
        try:
            self(xp.zeros((2, *input_shape), dtype=DTYPE))
            return _SHAPE_LOG
        finally:
            _SHAPE_LOG = None
            self.train(was_training)

    def forward_flops(self, input_shape) -> int:
        """FLOPs of one image's forward pass: 2 per multiply-add of every layer with a weight
        matrix or kernel (``weight`` with 2 or more axes).

        Such a layer does ``weight.size`` multiply-adds per output position, and its output
        positions are its output size over its output channels (OH*OW for a convolution, 1 for
        a Linear), so a k×k convolution costs 2·k·k·C_in/groups·C_out·OH·OW and a Linear
        2·in·out. Norms, activations and pooling are not counted (the usual convention).
        """
        flops = 0
        for module, shape in self._trace(input_shape):
            weight = module._parameters.get("weight")
            if weight is not None and weight.data.ndim >= 2:
                flops += 2 * int(weight.data.size) * (math.prod(shape[1:]) // weight.data.shape[0])
        return flops

    def summary(self, input_shape, print_fn=print) -> str:
        """Keras-style table: layer, output shape, parameter count; then the totals.

        ``input_shape`` excludes the batch axis, e.g. ``(1, 28, 28)`` or ``(784,)``.
        A batch of 2 zeros runs through the model in eval mode to find the shapes. Image shapes are
        shown as (N, C, H, W), PyTorch's order, although the conv tier stores them channels-last.
        """
        log = self._trace(input_shape)
        names = {id(m): n for n, m in self.named_modules()}
        rows = []
        for module, shape in log:
            if module._modules and not module._parameters:  # containers: their leaves are listed
                continue
            own = sum(p.size for p in module._parameters.values())
            if len(shape) == 4 and len(input_shape) == 3:  # conv tier: stored (N, H, W, C), shown as PyTorch's
                shape = (shape[0], shape[3], shape[1], shape[2])
            rows.append((names.get(id(module), "?") or type(module).__name__, type(module).__name__,
                         "(N, " + ", ".join(str(s) for s in shape[1:]) + ")", own))
        total = self.num_parameters()
        trainable = self.num_parameters(trainable_only=True)
        w0 = max([len("layer")] + [len(r[0]) for r in rows])
        w1 = max([len("type")] + [len(r[1]) for r in rows])
        w2 = max([len("output shape")] + [len(r[2]) for r in rows])
        header = f"{'layer':<{w0}}  {'type':<{w1}}  {'output shape':<{w2}}  {'params':>12}"
        out = [header, "-" * len(header)]
        out += [f"{a:<{w0}}  {b:<{w1}}  {c:<{w2}}  {d:>12,}" for a, b, c, d in rows]
        out += ["-" * len(header), f"Total params: {total:,}", f"Trainable params: {trainable:,}",
                f"Non-trainable params: {total - trainable:,}"]
        text = "\n".join(out)
        if print_fn is not None:
            print_fn(text)
        return text


_STRUCTURE = [0]  # bumped whenever a module gains, loses or replaces a child (see structure_version)


def structure_changed() -> None:
    """Note that some module's children changed (called by ``__setattr__``)."""
    _STRUCTURE[0] += 1


def structure_version() -> int:
    """A number that changes whenever any module's children change: code that remembers what it
    found in a model compares it to know when to look again."""
    return _STRUCTURE[0]


_SHAPE_LOG = None  # a list while Module._trace() records output shapes (summary, forward_flops)


@accelerated("forward", "backward")
class Sequential(Module):
    """Children named "0", "1", ... run in order; backward runs them in reverse."""

    def __init__(self, *layers):
        super().__init__()
        for i, layer in enumerate(layers):
            setattr(self, str(i), layer)

    def __len__(self):
        return len(self._modules)

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, layer: Module) -> "Sequential":
        setattr(self, str(len(self._modules)), layer)
        return self

    def forward(self, x):
        for layer in self._modules.values():
            x = layer(x)
        return x

    def backward(self, grad_out):
        for layer in reversed(list(self._modules.values())):
            grad_out = layer.backward(grad_out)
        return grad_out


def tracing() -> bool:
    """True while :meth:`Module.summary` (or ``forward_flops``) records each module's output shape."""
    return _SHAPE_LOG is not None
