"""Embedding: a lookup table of learned vectors, one row per token id.

    y[n, t] = W[ids[n, t]]        ids: (N, T) integers in [0, num_embeddings) -> y: (N, T, D)

It is a Linear layer without bias applied to one-hot vectors, y = one_hot(ids) @ W; forward
skips building them and just reads rows. Backward is that Linear layer's weight gradient,
dL/dW = one_hot(ids)^T @ g: row k is the sum of the output gradients at every position that
holds id k. The ids get no gradient (they are not continuous), so backward returns None.
(The one-hot product costs N*T*V*D; it suits character and small word vocabularies.)
"""
from __future__ import annotations

from common.backend import xp
from common.errors import UserError
from common.seed import host_rng
from vectorized.losses import one_hot
from vectorized.module import Module, parameter


class Embedding(Module):
    """weight: (num_embeddings, embedding_dim), initialised N(0, 1) as in PyTorch."""

    def __init__(self, num_embeddings: int, embedding_dim: int):
        super().__init__()
        if int(num_embeddings) < 1 or int(embedding_dim) < 1:
            raise UserError(f"Embedding needs positive sizes, got ({num_embeddings}, {embedding_dim})")
        self.num_embeddings, self.embedding_dim = int(num_embeddings), int(embedding_dim)
        self.weight = parameter(host_rng().standard_normal((self.num_embeddings, self.embedding_dim)))

    def forward(self, ids):
        ids_int = ids.astype(xp.int64)   # float ids (e.g. summary()'s zeros) must be whole numbers
        if not xp.issubdtype(ids.dtype, xp.integer) and bool((ids_int != ids).any()):
            raise UserError(f"Embedding expects integer token ids, got fractional values of dtype {ids.dtype}")
        if ids_int.size and (int(ids_int.min()) < 0 or int(ids_int.max()) >= self.num_embeddings):
            raise UserError(f"Embedding({self.num_embeddings}, ...) got token ids outside "
                            f"[0, {self.num_embeddings - 1}] (min {int(ids_int.min())}, max {int(ids_int.max())})")
        self.ids = ids_int
        return self.weight.data[ids_int]

    def backward(self, grad_out):
        ids = self.ids.reshape(-1)
        rows = one_hot(ids, self.num_embeddings, grad_out.dtype)            # (N*T, V)
        self.weight.grad += rows.T @ grad_out.reshape(-1, self.embedding_dim)
        return None

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}"
