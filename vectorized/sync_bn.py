"""Synchronised BatchNorm: batch statistics over the global batch of every rank (``--sync-bn``).

Under data parallelism a plain BatchNorm normalises each rank's shard with the shard's own
mean and variance (PyTorch DDP's default). With small shards those are noisy, and the model
is no longer the one a single process trains. SyncBatchNorm sums over the ranks instead:

    forward   mean = sum_all x / M,  var = sum_all (x - mean)^2 / M      (M = images x positions
                                                                           of every rank)
    backward  dx = gamma / sigma * (dy - sum_all dy / M - x_hat * sum_all dy x_hat / M)

each "sum_all" being a local sum followed by an Allreduce. It works on any layout whose last
axis is the channel: BatchNorm1d's (N, C) and BatchNorm2D's channels-last (N, H, W, C).
:func:`convert_sync_batchnorm` swaps it in for every BatchNorm of a model, keeping the same
parameters and buffers, so checkpoints load into the plain model and back.
"""
from __future__ import annotations

import numpy as np

from common.backend import to_device, to_numpy, xp
from common.errors import UserError
from vectorized.module import Module, structure_changed


class SyncBatchNorm(Module):
    """BatchNorm over the channel (last) axis with statistics of every rank.   (..., C) -> (..., C).

    ``group`` is a :class:`vectorized.data_parallel.DataParallel`: ``allreduce_sum`` of its
    communicator, and ``share`` = b_r / B, this rank's part of the global batch. Each rank's
    loss is the mean over its own b_r images while the batch's loss is the mean over B, so the
    gradient reaching this layer is 1/share times the batch's; backward sums ``share * dy``.
    """

    def __init__(self, bn, group):
        super().__init__()
        self.group = group
        self.num_features, self.eps, self.momentum = bn.num_features, bn.eps, bn.momentum
        self.affine = getattr(bn, "affine", True)
        self.kind = type(bn).__name__
        if self.affine:
            self.weight, self.bias = bn.weight, bn.bias  # the same Parameter objects
        for name, value in bn._buffers.items():
            self.register_buffer(name, value)

    def _sum_all(self, *local):
        """Element-wise sums over every rank of device vectors, in one Allreduce."""
        host = [np.atleast_1d(to_numpy(v)).astype(np.float64) for v in local]
        flat = np.concatenate(host)
        self.group.comm.allreduce_sum(flat)
        sizes = np.cumsum([h.size for h in host])[:-1]
        return [to_device(part) for part in np.split(flat, sizes)]

    def forward(self, x):
        if x.shape[-1] != self.num_features:
            raise UserError(f"SyncBatchNorm({self.num_features}) got input of shape {tuple(x.shape)}")
        rows = x.reshape(-1, self.num_features)              # (M_r, C)
        if not self.training:
            mean, var = self.running_mean, self.running_var
        else:
            total, count = self._sum_all(rows.sum(axis=0), np.array([len(rows)]))
            m = float(count[0])
            mean = (total / m).astype(rows.dtype)
            var = (self._sum_all(((rows - mean) ** 2).sum(axis=0))[0] / m).astype(rows.dtype)  # biased
            if m < 2:
                raise UserError(f"{self.kind} needs more than one value per channel in training mode")
            self.m = m
            self.num_batches_tracked += 1
            mo = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum  # None: cumulative
            self.running_mean *= 1 - mo
            self.running_mean += mo * mean
            self.running_var *= 1 - mo
            self.running_var += (mo * m / (m - 1)) * var
        self.inv_std = 1 / xp.sqrt(var + self.eps)
        self.x_hat = (rows - mean) * self.inv_std
        out = self.x_hat * self.weight.data + self.bias.data if self.affine else self.x_hat.copy()
        return out.reshape(x.shape)

    def backward(self, grad_out):
        g = grad_out.reshape(-1, self.num_features)
        dy_sum, dy_xhat = g.sum(axis=0), (g * self.x_hat).sum(axis=0)
        if self.affine:  # this rank's part; the gradient Allreduce adds the others
            self.weight.grad += dy_xhat
            self.bias.grad += dy_sum
            scale = self.weight.data * self.inv_std
        else:
            scale = self.inv_std
        if not self.training:
            return (g * scale).reshape(grad_out.shape)
        share = self.group.share
        s1, s2 = self._sum_all(share * dy_sum, share * dy_xhat)  # sums of the batch loss's dy
        dx = scale * (g - (s1 / self.m + self.x_hat * (s2 / self.m)) / share)
        return dx.astype(g.dtype).reshape(grad_out.shape)

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, synchronised"


def is_batchnorm(layer) -> bool:
    """BatchNorm1d, BatchNorm2D (and subclasses): the layers whose statistics span the batch."""
    return any(cls.__name__.startswith("BatchNorm") for cls in type(layer).__mro__) and \
        hasattr(layer, "running_mean")


def convert_sync_batchnorm(model, group) -> int:
    """Replace every BatchNorm of ``model`` by a :class:`SyncBatchNorm` sharing its parameters
    and buffers, in place and at the same position. Returns how many were replaced."""
    replaced = 0
    for _, parent in list(model.named_modules()):
        for name, child in list(parent.named_children()):
            if is_batchnorm(child):
                sync = SyncBatchNorm(child, group)
                sync.train(child.training)
                parent._modules[name] = sync  # assign in place: the registry's order is the run order
                object.__setattr__(parent, name, sync)
                structure_changed()
                replaced += 1
    return replaced
