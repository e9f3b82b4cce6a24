"""Shards: which rows of a global batch each of N processes trains on.

Data parallelism keeps the single-process order of the data. Every rank draws the same seeded
permutation of the training set, cuts it into the same global batches of B images, and takes
its own contiguous slice of each batch::

    permutation   7 2 9 0 4 1 8 3 6 5 ...
    global batch  [7 2 9 0 4 1 8 3]  [6 5 ...]        B = 8
    rank 0        [7 2 9 0]          [6 5 ...]
    rank 1                 [4 1 8 3]          [...]

Together the ranks see exactly the images one process would see in that step, so the average
of their gradients is the gradient of the big batch. Nothing depends on the rank count except
the cut, which is why a checkpoint written with N ranks resumes with any other N.
"""
from __future__ import annotations

from common.errors import UserError


def shard_slice(count: int, rank: int, size: int) -> slice:
    """Rows ``[rank*count//size, (rank+1)*count//size)`` of a batch of ``count``: contiguous,
    in rank order, sizes differing by at most one, together the whole batch."""
    if not 0 <= rank < size:
        raise ValueError(f"rank {rank} is outside 0..{size - 1}")
    return slice(rank * count // size, (rank + 1) * count // size)


def check_divisible(n: int, batch_size: int, size: int) -> None:
    """Every global batch of an epoch over ``n`` images must give each of ``size`` ranks at
    least one image; only the last, short batch can fail that. Raises UserError if it does."""
    short = n % batch_size
    if batch_size < size or 0 < short < size:
        smallest = batch_size if batch_size < size else short
        images = f"{smallest} image" + ("" if smallest == 1 else "s")
        raise UserError(f"a batch of {images} cannot be shared by {size} ranks: use --batch-size of at "
                        f"least {size}, and a training set (--limit, --val-split) whose size modulo "
                        f"--batch-size is 0 or at least {size}")
