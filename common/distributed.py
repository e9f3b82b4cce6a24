"""MPI for data-parallel training: the communicator, one process per rank, and failures.

``mpiexec -n N python convolutional/main.py resnet18 --distributed`` starts N copies of the
same program. Each copy is a *rank* (0 ... N-1) of one MPI communicator. This module holds
the parts of that which know nothing about neural networks:

* :func:`require_mpi` imports ``mpi4py`` or says in one line how to install it;
* :class:`Communicator`: rank, size, and the three collectives training needs (sum an
  array over every rank in place, broadcast rank 0's array, wait for everyone);
* :func:`setup_rank`: the CPU cores (and GPU) this rank may use, and silence on ranks > 0;
* :func:`run_main`: the entry wrapper. A rank that raises prints one line naming itself and
  the cause, then aborts the whole job, so no rank waits for ever in a collective. A rank that
  is killed cannot speak for itself: :mod:`common.rank_watch` reports it.

MPI itself comes from PyPI: ``pip install "nnott[mpi]"`` installs the ``mpich`` wheel (which
brings ``mpiexec``) and ``mpi4py``.
"""
from __future__ import annotations

import os
import shlex
import sys
import time

import numpy as np

from common import rank_watch
from common.errors import UserError

INSTALL_HINT = ('--distributed needs MPI: pip install "nnott[mpi]" (or: pip install mpich mpi4py), '
                "then run: mpiexec -n 2 python convolutional/main.py resnet18 --distributed")

#: How long a failing rank > 0 waits before it aborts the job, so that an error every rank
#: hits at once (a missing file) is reported once, by rank 0.
REPORT_GRACE_S = 1.0

_WORLD = None
_LINK = rank_watch.RankLink(None)  # this rank's connection to its machine's watcher


def require_mpi():
    """``mpi4py.MPI`` (importing it starts MPI), or UserError with the install command."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise UserError(INSTALL_HINT) from exc
    except Exception as exc:  # mpi4py present but its MPI library missing or broken
        raise UserError(f"MPI could not start ({' '.join(str(exc).split())}); {INSTALL_HINT}") from exc
    return MPI


class Communicator:
    """The processes of one ``mpiexec`` run. ``rank`` is this process, ``size`` how many there are.

    Collectives must be called by every rank, in the same order: each call waits for all.
    Arrays are host NumPy arrays (the ``mpich`` wheel does not read GPU memory).
    """

    def __init__(self, comm=None):
        MPI = require_mpi()
        self.MPI = MPI
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        node = self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)  # the ranks on this machine
        self.local_rank, self.local_size = node.Get_rank(), node.Get_size()
        node.Free()

    @property
    def is_root(self) -> bool:
        """True on rank 0, the rank that writes files and prints."""
        return self.rank == 0

    def allreduce_sum(self, array: np.ndarray) -> np.ndarray:
        """Replace ``array`` (contiguous host array) by its element-wise sum over every rank."""
        self.comm.Allreduce(self.MPI.IN_PLACE, array, op=self.MPI.SUM)
        return array

    def broadcast(self, array: np.ndarray, root: int = 0) -> np.ndarray:
        """Overwrite ``array`` on every rank with rank ``root``'s values."""
        self.comm.Bcast(array, root=root)
        return array

    def barrier(self) -> None:
        self.comm.Barrier()

    def abort(self, code: int = 1) -> None:
        """End every rank of the job now (MPI_Abort)."""
        self.comm.Abort(code)


def world() -> Communicator:
    """The communicator of every rank of this run (created on first use)."""
    global _WORLD
    if _WORLD is None:
        _WORLD = Communicator()
    return _WORLD


def threads_per_rank(local_size: int, cores: int | None = None) -> int:
    """CPU threads for one rank: the machine's cores shared by the ranks on it (at least 1)."""
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, int(cores or 1) // max(1, local_size))


def setup_rank(comm: Communicator, *, threads: int | None = None) -> int:
    """Give this rank its share of the CPU cores: ``threads`` (default: cores / ranks on this
    machine, unless OMP_NUM_THREADS says otherwise). Returns the thread count."""
    if threads is None:
        env = os.environ.get("OMP_NUM_THREADS", "")
        threads = int(env) if env.isdigit() and int(env) > 0 else threads_per_rank(comm.local_size)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads)  # kept for the whole run: the backend reads it
    except ImportError:
        pass
    return threads


def gpu_for_rank(local_rank: int, local_size: int, count: int) -> tuple[int, str | None]:
    """The GPU of the rank ``local_rank`` of the ``local_size`` ranks on one machine that sees
    ``count`` GPUs: ``local_rank % count``. With more ranks than GPUs, some ranks share one,
    and the second value is the note that says so (else None)."""
    device = local_rank % count
    if local_size <= count:
        return device, None
    per = -(-local_size // count)  # the most ranks any one GPU gets
    gpus = f"{count} GPU{'s' if count > 1 else ''}"
    return device, (f"note: {local_size} ranks share {gpus} on this machine (local rank r uses GPU r mod "
                    f"{count}): up to {per} ranks split one GPU's memory and time")


def choose_gpu(comm: Communicator, cupy=None) -> int | None:
    """Make GPU ``local_rank % count`` this rank's CuPy device, before anything is allocated on
    it: one device per rank while there are enough. Rank 0 prints one note when ranks must
    share. Returns the device id, or None without CuPy or a GPU (``--gpu`` then warns and runs
    on the CPU, as in one process). ``cupy``: the module (tests pass a stand-in)."""
    try:
        if cupy is None:
            import cupy
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception:
        return None
    if count == 0:
        return None
    device, note = gpu_for_rank(comm.local_rank, comm.local_size, count)
    cupy.cuda.Device(device).use()
    if note is not None and comm.is_root:
        print(note, flush=True)
    return device


def watch_checkpoints(folder) -> None:
    """Rank 0: checkpoints go to ``folder``; if a rank dies, the watcher names the newest one."""
    _LINK.checkpoints(folder)


class _Silent:
    """A text stream that drops everything (stdout and stderr of ranks > 0)."""

    def write(self, text):
        return len(text)

    def flush(self):
        pass

    def isatty(self):
        return False


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if isinstance(exc, UserError) else f"{type(exc).__name__}: {text}"


def _fail(comm: Communicator, stderr, exc: BaseException, debug: bool) -> None:
    """Report this rank's failure in one line and abort every rank (never returns)."""
    _LINK.reported()
    if not comm.is_root:
        time.sleep(REPORT_GRACE_S)  # rank 0 reports an error every rank hit; this rank is then stopped
    if isinstance(exc, KeyboardInterrupt):  # Ctrl-C outside the training loop: nothing to save
        print("\ninterrupted", file=stderr, flush=True)
        _quiet_abort(comm, 130)
    if debug:
        import traceback

        traceback.print_exception(exc, file=stderr)
    print(f"error: rank {comm.rank} of {comm.size}: {_one_line(exc)}"
          + ("" if debug or isinstance(exc, UserError) else " (run with --debug for the traceback)"),
          file=stderr, flush=True)
    _quiet_abort(comm, 1)


def _quiet_abort(comm: Communicator, code: int) -> None:
    rank_watch.wait_until_read(2)  # mpiexec has taken this rank's last line before the abort
    devnull = os.open(os.devnull, os.O_WRONLY)  # MPI's own abort banner would add lines
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    comm.abort(code)


def run_main(main_fn, argv=None) -> int:
    """Call ``main_fn(argv)`` on every rank; the distributed counterpart of ``common.cli.run_main``.

    Ranks > 0 print nothing. A rank that raises prints ``error: rank R of N: <cause>`` and
    aborts the job, so every rank stops within about a second. A rank that dies is reported in
    one line by its machine's watcher (:mod:`common.rank_watch`). Ctrl-C on ``mpiexec`` reaches
    every rank; they agree on the step to stop after, rank 0 saves a checkpoint, and all exit
    with code 130. Usage errors (argparse) exit 2 on every rank, printed once by rank 0.
    """
    from common.cli import TrainingInterrupted
    from common.cli.entry import without_resume

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        comm = world()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    global _LINK
    _LINK = rank_watch.connect(comm, without_resume(args))
    stdout, stderr = sys.stdout, sys.stderr
    if not comm.is_root:
        sys.stdout = sys.stderr = _Silent()
    debug = "--debug" in args
    try:
        try:
            code = main_fn(argv)
            code = 0 if code is None else int(code)
        except TrainingInterrupted as exc:
            if exc.checkpoint_path is not None:
                command = shlex.join(["mpiexec", "-n", str(comm.size), "python", sys.argv[0]]
                                     + without_resume(args) + ["--resume", str(exc.checkpoint_path)])
                print(f"\ninterrupted: checkpoint saved to {exc.checkpoint_path}; resume with: {command}",
                      file=stderr, flush=True)
            code = 130
        comm.barrier()  # rank 0 may still be writing; nobody leaves before it is done
        _LINK.done()
        return code
    except SystemExit as exc:  # argparse: the same on every rank
        _LINK.done()
        return exc.code if isinstance(exc.code, int) else 2
    except BaseException as exc:  # noqa: BLE001 - every failure must stop the other ranks
        _fail(comm, stderr, exc, debug)
        return 1
    finally:
        sys.stdout, sys.stderr = stdout, stderr




def entry(main_fn, argv=None) -> int:
    """The launchers' wrapper: :func:`run_main` with ``--distributed``, else ``common.cli.run_main``."""
    from common import cli

    args = sys.argv[1:] if argv is None else argv
    if "--distributed" in args:
        return run_main(main_fn, argv)
    return cli.run_main(main_fn, argv)
