"""Glue between recurrent layers and the rest: pick the last step, or apply a layer at every step.

    LastStep():                (N, T, H) -> (N, H)         a sequence classifier reads h_T
    TimeDistributed(layer):    (N, T, F) -> (N, T, F')     the same layer at each of the T steps
"""
from __future__ import annotations

from common.backend import xp
from common.errors import UserError
from vectorized.module import Module


class LastStep(Module):
    """y = x[:, -1] (batch-first) or x[-1] (time-first). Backward puts the gradient at step T."""

    def __init__(self, batch_first: bool = True):
        super().__init__()
        self.batch_first = bool(batch_first)

    def forward(self, x):
        if x.ndim != 3:
            raise UserError(f"LastStep expects a sequence batch of rank 3, got shape {tuple(x.shape)}")
        self.shape = x.shape
        return x[:, -1] if self.batch_first else x[-1]

    def backward(self, grad_out):
        grad = xp.zeros(self.shape, dtype=grad_out.dtype)
        if self.batch_first:
            grad[:, -1] = grad_out
        else:
            grad[-1] = grad_out
        return grad

    def extra_repr(self):
        return f"batch_first={self.batch_first}"


class TimeDistributed(Module):
    """Run ``layer`` (which takes (M, F)) on every step: (N, T, F) -> reshape (N*T, F) -> (N, T, F')."""

    def __init__(self, layer: Module):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        if x.ndim != 3:
            raise UserError(f"TimeDistributed expects a sequence batch of rank 3, got shape {tuple(x.shape)}")
        self.lead = x.shape[:2]
        y = self.layer(x.reshape(-1, x.shape[2]))
        return y.reshape(*self.lead, *y.shape[1:])

    def backward(self, grad_out):
        dx = self.layer.backward(grad_out.reshape(-1, *grad_out.shape[2:]))
        return None if dx is None else dx.reshape(*self.lead, -1)
