"""The parallel block runner: NNOTT's worker threads, and how the CPU cores are shared.

NNOTT spreads work over the CPU cores in one of two ways (its *parallelism*):

* "blocks" (the default): at first use NNOTT notes how many threads NumPy's BLAS was given
  (OPENBLAS_NUM_THREADS and friends; by default one per core), keeps that many worker threads
  of its own, and sets BLAS to ONE thread. Every multi-core step is then a list of blocks
  shared out to the workers (run_blocks), each block doing its copies, additions and
  one-thread matrix products on its own core. Mixing the two kinds of threads was
  measured to cost up to 1.5x: after a two-thread BLAS call, OpenBLAS's helper thread keeps
  spinning for a while and takes a core away from the workers.
* "blas": one Python thread does everything, and BLAS runs its matrix products on all the
  cores itself. Handing a block to a worker thread and waiting for it costs 20-100 us (a
  thread wake-up and the GIL), which a small model's blocks do not pay back: LeNet-5's
  training step measured 5.9 ms this way against 6.1-8.5 ms with worker threads, while
  BaselineCNN and every larger model were 1.1-1.3x faster with them.

choose_parallelism() picks one from the forward FLOPs of a batch (tuning.SMALL_MODEL_FLOPS); the
Trainer, the benchmark and the layer profiler call it once the model and batch are known.

(This file is over 400 lines on purpose: the block runner, its worker threads and the core
settings share one piece of state, who holds the workers, and are easier to check together.)
"""
from __future__ import annotations

import functools
import os
import threading
import time

from common.backend import backend_name, xp
from engine import tuning

_blas = None     # threadpoolctl's controllers of NumPy's BLAS, found on first use ([] without it)
_cores = None    # cores NNOTT uses; None until first use (then BLAS's thread count at that moment)
_workers = None  # NNOTT's worker count; None until first use
_parallelism = "blocks"
_in_block = threading.local()  # .active: this thread is running blocks of run_blocks


def _blas_controllers():
    global _blas
    if _blas is None:
        try:
            from threadpoolctl import ThreadpoolController
            _blas = list(ThreadpoolController().select(user_api="blas").lib_controllers)
        except Exception:  # threadpoolctl is optional
            _blas = []
    return _blas


def _keep_freed_memory() -> None:
    """Ask glibc's allocator to keep freed memory for the next array instead of handing it back.

    By default every block over 128 KiB-32 MiB is mapped fresh from the OS when allocated and
    unmapped when freed, so the next array of the same size page-faults on every 4 KiB page as
    it is first written: two 6 MB temporaries in a row measured 3.9 ms instead of 0.4 ms. A
    training step allocates the same sizes over and over, so NNOTT raises both thresholds once
    (``mallopt``): arrays up to 32 MiB come from the heap and freed memory stays there. Other C
    libraries (and non-glibc systems) are left as they are.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):  # no C library by that call (Windows), or no mallopt
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 32 * 2**20)
    mallopt(m_trim_threshold, 512 * 2**20)


def _use_cores(count):
    """Record how many cores NNOTT uses (None: BLAS's thread count when first asked)."""
    global _cores
    _keep_freed_memory()
    libs = _blas_controllers()
    if not libs:
        _cores = 1
    elif count is not None:
        _cores = max(1, int(count))
    elif _cores is None:
        _cores = max(1, max(lib.get_num_threads() for lib in libs))
    return libs


def set_cpu_workers(count: int | None = None) -> int:
    """"blocks" parallelism on ``count`` cores (None: the BLAS thread count the process started
    with): that many worker threads, BLAS pinned to one thread. Returns the worker count.
    Without ``threadpoolctl``: 1, and BLAS keeps its own threads."""
    global _workers, _parallelism
    libs = _use_cores(count)
    for lib in libs:
        lib.set_num_threads(1)
    _workers, _parallelism = _cores, "blocks"
    return _workers


def use_blas_threads(count: int | None = None) -> int:
    """"blas" parallelism on ``count`` cores (None: as :func:`set_cpu_workers`): no worker
    threads (:func:`run_blocks` runs every block on the caller), BLAS on that many threads.
    Returns the core count."""
    global _workers, _parallelism
    libs = _use_cores(count)
    for lib in libs:
        lib.set_num_threads(_cores)
    _workers, _parallelism = 1, "blas"
    _park_workers()  # a spinning worker would take a core from BLAS's threads
    return _cores


def choose_parallelism(forward_flops: float, cores: int | None = None, mode: str = "auto") -> str:
    """Pick the parallelism for a model whose forward pass over one batch costs
    ``forward_flops`` (see :meth:`vectorized.module.Module.forward_flops`): "blas" under
    ``tuning.SMALL_MODEL_FLOPS``, else "blocks"; ``mode`` "blocks" or "blas" forces one (the
    ``--parallelism`` flag of the benchmark and the profiler). Returns the name; nothing
    changes off the CPU."""
    if mode not in ("auto", "blocks", "blas"):
        raise ValueError(f"parallelism must be auto, blocks or blas, got {mode!r}")
    if backend_name() == "cpu":
        if mode == "blas" or (mode == "auto" and forward_flops < tuning.SMALL_MODEL_FLOPS):
            use_blas_threads(cores)
        else:
            set_cpu_workers(cores)
    return parallelism()


def parallelism() -> str:
    """"blocks" (NNOTT's worker threads, one-thread BLAS), "blas" (BLAS's own threads), or the
    backend's name off the CPU."""
    return _parallelism if backend_name() == "cpu" else backend_name()


def cpu_cores() -> int:
    """How many cores NNOTT uses on the CPU (worker threads or BLAS threads)."""
    if _cores is None:
        set_cpu_workers()
    return _cores


def cpu_workers() -> int:
    """How many blocks :func:`run_blocks` works on at once (1 off the CPU backend)."""
    if backend_name() != "cpu":
        return 1
    return _workers if _workers is not None else set_cpu_workers()


def run_blocks(ranges, work, scratch=dict):
    """Call ``work(r0, r1, buffers)`` for every ``(r0, r1)`` in ``ranges``, on all CPU cores.

    The blocks are shared out to :func:`cpu_workers` threads, the calling thread and worker threads
    (NumPy releases the GIL in its loops and in BLAS, which runs on one thread per worker), so
    everything a block does runs in parallel, on that core. Worker t
    always takes blocks t, t + workers, t + 2·workers...: the same blocks in the same order on every
    call, so sums over blocks (:func:`sum_blocks`) come out the same every time. The caller works
    on its own share instead of waiting, which spares it a thread wake-up per call. ``scratch()``
    makes each worker's private buffers (a dict by default); the blocks must write disjoint parts
    of the output. On a GPU, the strict backend, with one worker, when called from inside a
    block (a worker never waits for its own pool), or while another thread's call has the workers,
    the blocks simply run in order on the calling thread.
    """
    workers = min(cpu_workers(), len(ranges))
    if workers <= 1 or getattr(_in_block, "active", False) or not _dispatch.acquire(blocking=False):
        buffers = scratch()  # one worker, a call from inside a block, or another thread has the workers
        for r0, r1 in ranges:
            work(r0, r1, buffers)
        return
    try:
        _share_out(ranges, work, scratch, workers)
    finally:
        _dispatch.release()


def _share_out(ranges, work, scratch, workers):
    def run(share):
        buffers = scratch()
        _in_block.active = True
        try:
            for r0, r1 in share:
                work(r0, r1, buffers)
        finally:
            _in_block.active = False

    helpers = _worker_threads(workers - 1)
    for t, helper in enumerate(helpers, 1):
        helper.start(lambda share=ranges[t::workers]: run(share))
    try:
        run(ranges[0::workers])
    finally:
        errors = [helper.finish() for helper in helpers]  # every block has finished before anything is returned or raised
    for error in errors:
        if error is not None:
            raise error


# --------------------------------------------------------------------------- worker threads
# Between two calls of run_blocks a worker thread waits for its next share. Sleeping (a lock)
# is the usual way, but waking a sleeping thread costs 20-100 us: the kernel has to schedule
# it, and on a virtual machine whose idle cores halt (this project's benchmark machine) the
# core itself has to be woken first. A BaselineCNN step makes about 20 calls, so that is a few
# milliseconds a step. OpenMP runtimes (PyTorch's threads) avoid it by spinning a while before
# they sleep, and so do NNOTT's workers: each waits on a *spinlock* (pthread_spin_lock through
# ctypes, which releases the GIL while the C function spins), sees its next share within a
# microsecond, and after tuning.SPIN_SECONDS without work is sent to sleep by a small "parker" thread.
# The caller waits for the workers' shares the same way. Where the C library has no spinlocks
# (macOS, Windows), or with tuning.SPIN_SECONDS = 0, the workers sleep on ordinary locks.



def _spin_functions():
    """(lock, unlock, init) of the C library's pthread spinlocks, or None where there are none."""
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        fns = [getattr(libc, f"pthread_spin_{name}") for name in ("lock", "unlock", "init")]
    except (OSError, AttributeError, TypeError):  # no such functions, or no C library by that call
        return None
    return fns


_SPIN = _spin_functions()


class _Gate:
    """A flag one thread opens and another waits for (and closes again): ``open()``, ``wait()``.

    A pthread spinlock held closed when tuning.SPIN_SECONDS > 0 and the C library has them (the waiter
    busy-waits in C, the GIL released), else a threading.Lock (the waiter sleeps)."""

    def __init__(self):
        if tuning.SPIN_SECONDS > 0 and _SPIN is not None:
            import ctypes

            self._word = ctypes.c_int(0)  # pthread_spinlock_t is an int (glibc, musl)
            address = ctypes.byref(self._word)
            lock, unlock, init = _SPIN
            init(address, 0)
            lock(address)
            self.open, self.wait = functools.partial(unlock, address), functools.partial(lock, address)
            self.spins = True
        else:
            gate = threading.Lock()
            gate.acquire()
            self.open, self.wait, self.spins = gate.release, gate.acquire, False


class _Worker:
    """One worker thread of run_blocks.

    ``start(job)`` hands it a job, ``finish()`` waits for the job and returns its exception (or
    None). Between jobs it is "spinning" (waiting at ``go``); the parker sends it to sleep by
    opening ``go`` without a job ("parking"), and it then sleeps on ``wake`` ("parked") until the
    next start. ``lock`` orders those state changes between the caller, the parker and this thread."""

    def __init__(self, index):
        self.go, self.done = _Gate(), _Gate()
        self.wake = threading.Lock()
        self.wake.acquire()
        self.lock = threading.Lock()
        self.job, self.error, self.state, self.idle_since = None, None, "spinning", time.monotonic()
        threading.Thread(target=self._loop, name=f"nnott-blocks-{index}", daemon=True).start()

    def _loop(self):
        while True:
            self.go.wait()
            job = self.job
            if job is None:  # opened by the parker
                job = self._sleep()
            try:
                job()
            except BaseException as error:  # noqa: BLE001 -- handed to the caller by finish()
                self.error = error
            self.idle_since = time.monotonic()
            self.job = None
            self.done.open()

    def _sleep(self):
        with self.lock:
            job = self.job  # start() may have come in between
            if job is None:
                self.state = "parked"
        if job is None:
            self.wake.acquire()  # released by start() with the next job
            job = self.job
        return job

    def start(self, job):
        self.error = None
        with self.lock:
            self.job, was, self.state = job, self.state, "spinning"
            if was == "spinning":
                self.go.open()
            elif was == "parked":
                self.wake.release()
            # "parking": the parker's opening of go is still to be taken, and the job with it
        if was != "spinning":
            _parker_awake.set()

    def finish(self):
        self.done.wait()
        return self.error

    def park(self, now):
        """Called by the parker (and :func:`_park_workers`): send a worker idle since ``now`` -
        tuning.SPIN_SECONDS to sleep. Returns whether it is asleep or on its way."""
        with self.lock:
            if self.state == "spinning" and self.job is None and now - self.idle_since >= tuning.SPIN_SECONDS:
                self.state = "parking"
                self.go.open()
            return self.state != "spinning"


_threads: list = []                # the worker threads, created on first use
_dispatch = threading.Lock()       # held by the run_blocks call that is using the workers
_parker_awake = threading.Event()  # set while some worker may be spinning


def _worker_threads(count):
    while len(_threads) < count:
        _threads.append(_Worker(len(_threads)))
        if _threads[-1].go.spins:
            if len(_threads) == 1:
                threading.Thread(target=_parker, name="nnott-parker", daemon=True).start()
            _parker_awake.set()
    return _threads[:count]


def _parker():
    """Every tuning.SPIN_SECONDS, send the workers that have been idle that long to sleep; sleep itself
    while every worker does."""
    while True:
        _parker_awake.wait()
        time.sleep(tuning.SPIN_SECONDS)
        if all([w.park(time.monotonic()) for w in list(_threads)]):
            _parker_awake.clear()
            if any(w.state == "spinning" for w in list(_threads)):
                _parker_awake.set()  # a worker was started in between


def _park_workers():
    """Send every idle spinning worker to sleep now."""
    if _threads and _threads[0].go.spins:
        for w in list(_threads):
            w.park(float("inf"))


def _forget_workers():
    """In a forked child: the parent's threads do not exist there; new ones are made on first use."""
    global _threads, _parker_awake, _dispatch
    _threads, _parker_awake, _dispatch = [], threading.Event(), threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_workers)


def scratch(buffers, name, shape, dtype, zeros=False):
    """A worker's scratch array ``name`` of this shape, kept in its ``buffers`` dict (the one
    :func:`run_blocks` passes to ``work``) for its next block: allocated once per call of
    ``run_blocks``, not once per block; filled with zeros when made if ``zeros``."""
    key = (name, tuple(shape))
    if key not in buffers:
        buffers[key] = (xp.zeros if zeros else xp.empty)(shape, dtype=dtype)
    return buffers[key]




_bordered = threading.local()  # .buffers: this thread's zero-bordered buffers, newest last


def zero_bordered(shape, dtype, interior):
    """This thread's buffer of ``shape`` whose values outside ``interior`` (a tuple of slices) are zero,
    for a caller that writes only inside ``interior``: a padded copy of a block of images.

    Zeroing a padded buffer on every call cost a pass over it per layer and block; this one is made
    and zeroed once and kept for the next call with the same shape, dtype and interior (the
    ``BORDERED_KEEP`` most recent of them per thread)."""
    key = (tuple(shape), str(dtype), tuple((sl.start, sl.stop) for sl in interior))
    kept = getattr(_bordered, "buffers", None)
    if kept is None:
        kept = _bordered.buffers = {}
    buf = kept.pop(key, None)
    if buf is None:
        buf = xp.zeros(shape, dtype=dtype)
    while kept and len(kept) >= tuning.BORDERED_KEEP:
        kept.pop(next(iter(kept)))  # the oldest
    if tuning.BORDERED_KEEP > 0:
        kept[key] = buf  # newest last
    return buf


def blocks_of(total: int, item_bytes: int, block_bytes: int | None = None, small_bytes: int | None = None):
    """Ranges (i0, i1) covering ``range(total)``, each about ``block_bytes`` of items of
    ``item_bytes`` (default ``tuning.BLOCK_BYTES``, read at each call): at least one item per block and
    at least one block per worker. One block on
    a GPU (no cache to fit), and for work under ``small_bytes`` (default ``tuning.SMALL_WORK_BYTES``),
    which costs less than handing it to the workers."""
    small = tuning.SMALL_WORK_BYTES if small_bytes is None else small_bytes
    block_bytes = tuning.BLOCK_BYTES if block_bytes is None else block_bytes
    if total == 0 or backend_name() == "gpu" or total * item_bytes <= small:
        return [(0, total)]
    workers = cpu_workers()
    per_block = max(1, block_bytes // max(item_bytes, 1))
    count = -(-total // per_block)                         # blocks of about block_bytes ...
    count = min(total, -(-count // workers) * workers)     # ... as many for every worker
    # sizes differ by at most one item, and the first block is a largest (scratch buffers are sized by it)
    return [(-(-i * total // count), -(-(i + 1) * total // count)) for i in range(count)]


def elementwise(fn, out, *inputs, block_bytes: int | None = None):
    """``fn(out_part, *input_parts)`` over flat parts of ``out`` and ``inputs`` (same size), on every
    core with :func:`run_blocks`; returns ``out``. ``fn`` writes its part of ``out`` (``out=``).
    Inputs that are not contiguous are copied first; ``out`` must be contiguous (in C or in
    Fortran order: the latter runs on the transposes)."""
    if out.ndim > 1 and not out.flags.c_contiguous and out.flags.f_contiguous:
        elementwise(fn, out.T, *(a.T for a in inputs), block_bytes=block_bytes)
        return out
    blocks = blocks_of(out.size, out.itemsize, block_bytes, tuning.SMALL_PASS_BYTES)
    if len(blocks) == 1 and all(a.shape == out.shape for a in inputs):
        fn(out, *inputs)  # one block: the whole arrays, as they are
        return out
    flat_out = out.reshape(-1)
    flat_in = [xp.ascontiguousarray(a).reshape(-1) for a in inputs]
    run_blocks(blocks, lambda i0, i1, _buf: fn(flat_out[i0:i1], *(a[i0:i1] for a in flat_in)))
    return out


def sum_blocks(ranges, partial):
    """The sum over the blocks of ``partial(r0, r1, buffers)`` (an array per block), computed with
    :func:`run_blocks`: each worker keeps its own running total, and the totals are added at the
    end in the order of their first blocks, so the result is the same on every call. ``partial``
    may reuse a buffer of its own for its result; the total is a separate array."""
    totals = []

    def work(r0, r1, buffers):
        value = partial(r0, r1, buffers)
        if "_total" in buffers:
            buffers["_total"] += value
        else:
            buffers["_total"] = value.copy()
            totals.append((r0, buffers))

    run_blocks(ranges, work)
    totals.sort(key=lambda t: t[0])  # the workers' totals in the order of their first blocks: the same every call
    result = totals[0][1]["_total"]
    for _r0, t in totals[1:]:
        result = result + t["_total"]
    return result




def image_blocks(n: int, per_image_bytes: int, block_bytes: int | None = None, small_bytes: int | None = None):
    """Ranges (n0, n1) of whole images, about ``block_bytes`` (default ``IMAGE_BLOCK_BYTES``) each:
    at least one image per block and at least one block per worker of :func:`run_blocks`. On a
    GPU, or for less work than ``small_bytes`` (see :func:`blocks_of`): one block."""
    return blocks_of(n, per_image_bytes, block_bytes or tuning.IMAGE_BLOCK_BYTES, small_bytes)
