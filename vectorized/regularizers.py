"""L1 and L2 penalties added to the loss, with their gradients added to each ``Parameter.grad``.

Call after ``loss.backward()`` / ``model.backward()`` and before ``optimizer.step()``::

    loss = criterion(model(x), y)
    model.backward(criterion.backward())
    loss = loss + l2_penalty(weights(model), lam=1e-4)

L2 with the 1/2 convention, lam/2 * sum w^2, has gradient lam * w: exactly the coupled weight
decay of SGD(weight_decay=lam). L1, lam * sum |w|, pushes weights to exactly zero (sparsity);
its gradient is lam * sign(w) (0 at w = 0, a subgradient).
"""
from __future__ import annotations

from common.backend import xp


def weights(module):
    """The parameters with 2 or more axes (weight matrices and kernels): biases and
    normalisation scales are usually left out of a penalty."""
    return [p for p in module.parameters(trainable_only=True) if p.data.ndim >= 2]


def l2_penalty(params, lam: float):
    """Returns lam/2 * sum ||w||^2 (0-d device array) and adds lam * w to each ``p.grad``."""
    total = 0.0
    for p in params:
        total = total + (p.data * p.data).sum()
        p.grad += lam * p.data
    return xp.asarray(0.5 * lam * total)


def l1_penalty(params, lam: float):
    """Returns lam * sum |w| (0-d device array) and adds lam * sign(w) to each ``p.grad``."""
    total = 0.0
    for p in params:
        total = total + xp.abs(p.data).sum()
        p.grad += lam * xp.sign(p.data)
    return xp.asarray(lam * total)
