"""Fast Linear: the same three products, split over the workers when large (:func:`engine.arrays.gemm`),
and no dL/dx when the layer is a training step's first (:mod:`engine.steps`).

In evaluation mode on the CPU (``tuning.LINEAR_EVAL_TRANSPOSED``) a plain Linear layer computes
yᵀ = W xᵀ, an (out, N) array, and returns its transpose: the same numbers, held column by column.
For a batch of a few dozen rows BLAS runs W xᵀ faster than x Wᵀ, and faster still when x itself
came column by column from the Linear layer before (then xᵀ is contiguous), so an MLP's layers
hand each other that layout; a ReLU in between works on it in place.
"""
from __future__ import annotations

from common.backend import backend_name
from engine import tuning
from engine.arrays import column_sums, gemm
from engine.inference import linear_weights
from engine.steps import skips_input_grad
from vectorized.layers import Linear


def linear_forward(self, x):
    self.check_input(x)
    if x.ndim != 2:  # leading dims other than (N,): the layer's own code
        return Linear.forward.reference(self, x)
    self.x = x
    weight, bias = linear_weights(self)  # a layer scale folded in, at evaluation (engine.blocks)
    if not self.training and type(self) is Linear and tuning.LINEAR_EVAL_TRANSPOSED and backend_name() == "cpu":
        yt = gemm(weight, x.T)
        if bias is not None:
            yt += bias[:, None]
        return yt.T
    return gemm(x, weight.T, bias=bias)


def linear_backward(self, grad_out):
    if self.x.ndim != 2:
        return Linear.backward.reference(self, grad_out)
    self.weight.grad += gemm(grad_out.T, self.x)
    if self.bias is not None:
        self.bias.grad += column_sums(grad_out)
    if skips_input_grad(self):
        return None
    return gemm(grad_out, self.weight.data)


REPLACEMENTS = [(Linear, "forward", linear_forward), (Linear, "backward", linear_backward)]
