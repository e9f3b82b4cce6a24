"""Data parallelism: N processes train one model as if they were one process with the big batch.

Each rank holds a full copy of the model. For every global batch of B images:

1. rank r takes its shard of b_r images (:func:`common.data.shards.shard_slice`);
2. forward and backward on the shard give the shard's mean gradient g_r;
3. one Allreduce over one flat buffer sums b_r * g_r over the ranks; dividing by B gives

       g = (1/B) sum_r b_r g_r = (1/B) sum_r sum_{i in shard r} grad l_i,

   the mean gradient of the whole batch, exactly what one process computes;
4. every rank takes the same optimizer step with the same g, so the copies stay equal.

The :class:`~vectorized.trainer.Trainer` calls this object at a few points (``parallel=``);
a trainer without it is a single process. Rank 0 alone writes files and prints.
"""
from __future__ import annotations

import numpy as np

from common.backend import to_device, to_float, to_numpy, xp
from common.data.shards import shard_slice
from common.errors import UserError


class DataParallel:
    """The trainer's view of the other ranks.

    Args:
        comm: a :class:`common.distributed.Communicator` (``rank``, ``size``, ``allreduce_sum``,
            ``broadcast``).
    """

    def __init__(self, comm):
        self.comm = comm
        self.rank, self.size = comm.rank, comm.size
        self.is_root = comm.is_root
        self.local_count, self.global_count = 0, 0
        self.stop_requested = False

    @property
    def share(self) -> float:
        """This rank's part of the current global batch, b_r / B."""
        return self.local_count / self.global_count

    # ------------------------------------------------------------------ start
    def broadcast_model(self, model) -> None:
        """Give every rank rank 0's parameters and buffers (the same start, whatever the seeds)."""
        self._broadcast_state(model, model.state_dict())
        self.stop_requested = False

    def _broadcast_state(self, model, state) -> None:
        for value in state.values():  # host copies, the same names and shapes on every rank
            self.comm.broadcast(value)
        model.load_state_dict(state, strict=False)

    def reseed_device_stream(self, seed: int, step: int) -> None:
        """Dropout masks come from ``xp.random``: give ranks > 0 their own stream, so that shards
        do not share masks. Rank 0 keeps the single-process stream."""
        if self.is_root:
            return
        state = np.random.SeedSequence([int(seed), self.rank, int(step)]).generate_state(1)[0]
        xp.random.seed(int(state))

    def watch_checkpoints(self, folder) -> None:
        """Rank 0 writes checkpoints to ``folder``: if a rank dies, the line that reports it
        names the newest one (:mod:`common.rank_watch`)."""
        from common import distributed

        distributed.watch_checkpoints(folder)

    # ------------------------------------------------------------------ each step
    def shard(self, global_count: int) -> slice:
        """This rank's rows of a global batch of ``global_count`` images."""
        part = shard_slice(global_count, self.rank, self.size)
        self.local_count, self.global_count = part.stop - part.start, global_count
        return part

    def average_gradients(self, parameters, interrupt: bool) -> None:
        """Turn each rank's shard-mean gradient into the global-batch mean gradient, in place.

        One flat buffer [b_r * g_r of every parameter ..., b_r, interrupt] and one Allreduce:
        after it the buffer holds [sum of b_r g_r ..., B, ranks that saw Ctrl-C]. The last value
        makes every rank stop after the same step (``stop_requested``).
        """
        parameters = list(parameters)
        grads = [p.grad for p in parameters]
        dtype = np.result_type(*[g.dtype for g in grads]) if grads else np.float32
        flat = np.empty(sum(g.size for g in grads) + 2, dtype=dtype)
        offset = 0
        for g in grads:
            flat[offset:offset + g.size] = to_numpy(g).ravel()
            offset += g.size
        flat[:offset] *= self.local_count
        flat[offset:] = (self.local_count, float(interrupt))
        self.comm.allreduce_sum(flat)
        total = flat[offset]
        offset = 0
        for p in parameters:
            p.grad[...] = to_device((flat[offset:offset + p.grad.size] / total).reshape(p.grad.shape))
            offset += p.grad.size
        self.stop_requested = bool(flat[-1] > 0)

    # ------------------------------------------------------------------ metrics
    def sum_metrics(self, loss_sum, correct, seen):
        """Epoch totals over every rank: (loss sum, correct count, images seen)."""
        buf = np.array([to_float(loss_sum), to_float(correct), float(seen)], dtype=np.float64)
        self.comm.allreduce_sum(buf)
        return buf[0], int(round(buf[1])), int(round(buf[2]))

    def sync_buffers(self, model) -> None:
        """Every rank takes rank 0's buffers (BatchNorm running statistics), as PyTorch DDP does.
        With local BatchNorm each rank averaged its own shards; rank 0's copy is the one saved."""
        buffers = {name for name, _ in model.named_buffers()}
        self._broadcast_state(model, {k: v for k, v in model.state_dict().items() if k in buffers})

    def evaluate(self, trainer, x, y, batch_size=256) -> dict:
        """Mean loss and accuracy over (x, y), each rank evaluating a contiguous slice of it
        with rank 0's running statistics: {'loss', 'acc'} (no per-image predictions)."""
        self.sync_buffers(trainer.model)
        part = shard_slice(len(x), self.rank, self.size)
        n = part.stop - part.start
        buf = np.zeros(3)
        if n:
            local = trainer.evaluate(x[part], y[part], batch_size=batch_size)
            buf[:] = local["loss"] * n, float((local["pred"] == y[part]).sum()), n
        self.comm.allreduce_sum(buf)
        total = max(buf[2], 1.0)
        return {"loss": float(buf[0] / total), "acc": float(buf[1] / total) if buf[2] else float("nan")}

    # ------------------------------------------------------------------ checkpoints
    def prepare_interrupted_save(self, trainer, in_epoch: bool) -> bool:
        """Before a checkpoint on Ctrl-C (every rank calls it, after the same step): a mid-epoch
        one gets the epoch's partial sums over every rank. Returns True on rank 0, which writes."""
        if not in_epoch:
            return self.is_root
        loss_sum, correct = trainer._partial
        total_loss, total_correct, seen = self.sum_metrics(loss_sum, correct, getattr(trainer, "_seen", 0))
        trainer._partial = (xp.asarray(total_loss), xp.asarray(total_correct))
        trainer._seen = seen
        return self.is_root

    def after_resume(self, trainer) -> None:
        """A resumed mid-epoch run carries the epoch's partial sums once: on rank 0."""
        if trainer._resume_position is not None and not self.is_root:
            perm, first_batch, partial = trainer._resume_position
            partial = dict(partial, loss_sum=0.0, correct=0, seen=0)
            trainer._resume_position = (perm, first_batch, partial)


def from_args(args):
    """The DataParallel for ``--distributed`` (this rank's cores, and its GPU with ``--gpu``
    chosen before the backend starts), or None for one process."""
    if not getattr(args, "distributed", False):
        if getattr(args, "sync_bn", False):
            raise UserError("--sync-bn synchronises ranks: use it with --distributed under mpiexec")
        return None
    from common import distributed  # imports nothing from MPI until world() is called

    comm = distributed.world()
    distributed.setup_rank(comm)
    if getattr(args, "gpu", False):
        distributed.choose_gpu(comm)
    return DataParallel(comm)
