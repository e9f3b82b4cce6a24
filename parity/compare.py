"""Tier parity: the scalar network and its vectorized twin, compared number by number.

It sits above both tiers (the scalar tier imports nothing from the vectorized one).

Used by the tests and by the tutorial's parity page. Both tiers start from the same weights;
the scalar tier computes in Python floats (float64), the vectorized tier in ``dtype``.
"""
from __future__ import annotations

import numpy as np

from parity.convert import to_vectorized
from scalar.io import state_arrays
from scalar.losses import cross_entropy
from scalar.optimizers import make_optimizer
from scalar.trainer import Trainer
from vectorized.losses import CrossEntropyLoss
from vectorized.optim import make_optimizer as make_vectorized_optimizer


def _max_abs(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


def scalar_batch(network, rows, labels):
    """Logits, mean loss and mean gradients of a batch, one sample at a time."""
    network.eval()
    network.zero_grad()
    logits, total = [], 0.0
    for x, y in zip(rows, labels):
        z = network.forward(x)
        loss, grad = cross_entropy(z, y)
        network.backward(grad)
        logits.append(z)
        total += loss
    network.scale_grads(1.0 / len(rows))
    return logits, total / len(rows), network.grad_dict()


def vectorized_batch(model, x, labels):
    """The same three things from the vectorized tier: one matrix product per layer."""
    model.eval()
    model.zero_grad()
    loss_fn = CrossEntropyLoss()
    logits = model(x)
    loss = float(loss_fn(logits, labels))
    model.backward(loss_fn.backward())
    return logits, loss, {name: p.grad for name, p in model.named_parameters()}


def compare_batch(network, x: np.ndarray, labels: np.ndarray, dtype=np.float64) -> dict:
    """Max |scalar - vectorized| of the logits, the loss and every gradient tensor."""
    model = to_vectorized(network, dtype)
    s_logits, s_loss, s_grads = scalar_batch(network, x.tolist(), labels.tolist())
    v_logits, v_loss, v_grads = vectorized_batch(model, x.astype(dtype), labels)
    diffs = {"logits": _max_abs(s_logits, v_logits), "loss": abs(s_loss - v_loss)}
    diffs.update({f"grad {k}": _max_abs(s_grads[k], v_grads[k]) for k in s_grads})
    return diffs


def compare_trajectory(network, x: np.ndarray, labels: np.ndarray, optimizer: str = "momentum",
                       lr: float = 0.05, steps: int = 5, batch_size: int = 4, dtype=np.float64) -> list[float]:
    """Train both tiers on the same batches; after each step, max |scalar - vectorized| over all parameters.

    The network must have no dropout (the two tiers draw different masks).
    """
    if any(p > 0 for p in network.config["dropouts"]):
        raise ValueError("trajectory parity needs a network without dropout")
    model = to_vectorized(network, dtype)
    trainer = Trainer(network, make_optimizer(optimizer, network, lr), progress=False)
    v_opt = make_vectorized_optimizer(optimizer, model.parameters(), lr)
    loss_fn = CrossEntropyLoss()
    diffs = []
    for step in range(steps):
        lo = (step * batch_size) % len(labels)
        xb, yb = x[lo:lo + batch_size], labels[lo:lo + batch_size]
        trainer.train_batch(xb.tolist(), yb.tolist())
        model.train()
        v_opt.zero_grad()
        loss_fn(model(xb.astype(dtype)), yb)
        model.backward(loss_fn.backward())
        v_opt.step()
        v_state, s_state = model.state_dict(), state_arrays(network)
        diffs.append(max(_max_abs(s_state[k], v_state[k]) for k in s_state))
    return diffs
