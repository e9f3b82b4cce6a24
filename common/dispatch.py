"""Reference or fast: which implementation of a layer runs.

Every tier-2/3 layer's file holds its *reference* forward and backward: the math, written to be
read. The engine wing (the top-level ``engine`` package) holds faster replacements for some
layers and registers them here when it is imported. A layer class opts in with one line::

    @accelerated("forward", "backward")
    class Conv2D(Module):
        def forward(self, x): ...      # the reference: what the tutorial shows

Calling ``layer.forward(x)`` then runs the engine's replacement while the fast engine is on and
one is registered for the layer's class (or a parent class), and the reference otherwise.
``use_engine("reference")`` switches every layer back to its reference; the tests use the
reference as the oracle of every fast path.

The engine may also take part in a training step (:func:`prepare_training`,
:func:`training_backward`); with the reference engine these do the plain thing.
"""
from __future__ import annotations

import functools

ENGINES = ("reference", "fast")
_state = {"engine": "fast"}  # "fast": replacements run where the engine registered one
_fast = {}                   # (class, method name) -> function(layer, *args)
_hooks = {}                  # "prepare_training" / "training_backward" -> the engine's function


def use_engine(name: str) -> None:
    """'reference' (every layer runs its own code) or 'fast' (the engine's replacements, once
    the ``engine`` package is imported; ``engine.use("fast")`` does both)."""
    if name not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {name!r}")
    _state["engine"] = name


def engine_name() -> str:
    """The engine in force: 'fast' only when fast replacements are registered and switched on."""
    return "fast" if _state["engine"] == "fast" and _fast else "reference"


def register(cls, method: str, function) -> None:
    """The engine's replacement for ``cls.method``: ``function(layer, *args)``."""
    _fast[(cls, method)] = function


def register_hook(name: str, function) -> None:
    if name not in ("prepare_training", "training_backward"):
        raise ValueError(f"unknown engine hook {name!r}")
    _hooks[name] = function


def replacement(cls, method: str):
    """The registered replacement for ``method`` of ``cls`` or its nearest parent, or None."""
    if _state["engine"] != "fast" or not _fast:
        return None
    for klass in cls.__mro__:
        function = _fast.get((klass, method))
        if function is not None:
            return function
    return None


def accelerated(*methods):
    """Class decorator: the named methods run the engine's replacement when there is one."""

    def mark(cls):
        for name in methods:
            reference = cls.__dict__[name] if name in cls.__dict__ else getattr(cls, name)  # own or inherited

            def call(self, *args, _name=name, _reference=reference, **kwargs):
                return (replacement(type(self), _name) or _reference)(self, *args, **kwargs)

            functools.update_wrapper(call, reference)
            call.reference = reference  # the layer's own code, whatever the engine
            setattr(cls, name, call)
        return cls

    return mark


def prepare_training(model, batch_forward_flops: float) -> None:
    """Called once a model and its batch size are known, before training: the fast engine picks
    how to share the CPU cores; the reference engine does nothing."""
    hook = _hooks.get("prepare_training") if engine_name() == "fast" else None
    if hook is not None:
        hook(model, batch_forward_flops)


def training_backward(model, grad_out) -> None:
    """The backward pass of a training step, whose only product is every parameter's gradient
    (nobody uses the gradient with respect to the images, as in PyTorch, where the input does
    not require a gradient). The fast engine may skip work that only that gradient needs."""
    hook = _hooks.get("training_backward") if engine_name() == "fast" else None
    if hook is None:
        model.backward(grad_out)
    else:
        hook(model, grad_out)
