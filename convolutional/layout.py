"""Layout changes at the edges of a channels-last network: ToChannelsLast and Flatten.

Datasets and the public API use PyTorch's (N, C, H, W); inside, conv-tier layers pass
(N, H, W, C). An architecture transposes once, in its first module, and :class:`Flatten`
puts the features back in C, H, W order so a classifier's first Linear matches PyTorch's.
"""
from __future__ import annotations

from common.backend import xp
from common.errors import UserError
from vectorized.module import Module


class ToChannelsLast(Module):
    """(N, C, H, W) -> (N, H, W, C), contiguous; backward transposes the gradient back."""

    def forward(self, x):
        if x.ndim != 4:
            raise UserError(f"ToChannelsLast expects images (N, C, H, W), got shape {tuple(x.shape)}")
        return xp.ascontiguousarray(x.transpose(0, 2, 3, 1))

    def backward(self, grad_out):
        if grad_out is None:  # the layer after this one computed no input gradient (a training step's first)
            return None
        return xp.ascontiguousarray(grad_out.transpose(0, 3, 1, 2))


class Flatten(Module):
    """(N, H, W, C) -> (N, C*H*W) in C, H, W order (PyTorch's ``flatten`` of NCHW).

    2-D input (N, F) passes through unchanged.
    """

    def forward(self, x):
        self.in_shape = x.shape
        if x.ndim == 2:
            return x
        if x.ndim != 4:
            raise UserError(f"Flatten expects (N, H, W, C) or (N, F), got shape {tuple(x.shape)}")
        n, h, w, c = x.shape
        return xp.ascontiguousarray(x.transpose(0, 3, 1, 2)).reshape(n, c * h * w)

    def backward(self, grad_out):
        if grad_out is None or len(self.in_shape) == 2:  # None: see ToChannelsLast.backward
            return grad_out
        n, h, w, c = self.in_shape
        return xp.ascontiguousarray(grad_out.reshape(n, c, h, w).transpose(0, 2, 3, 1))
