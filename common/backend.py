"""The array backend: one ``xp`` name for NumPy (CPU), CuPy (GPU) or the strict-device CPU backend.

Every tier-2/3 module does its math through ``xp``::

    from common.backend import xp
    y = xp.maximum(x, 0)

``xp`` is a proxy: switching the backend with :func:`use_gpu`, :func:`use_cpu` or
:func:`use_strict` changes what *new* calls do, everywhere, without re-importing.

Data is loaded on the host with NumPy and moved to the device once per batch with
:func:`to_device`; results come back with :func:`to_numpy`.  Mixing host and device arrays
in one operation is the classic CuPy bug, so tests run under :func:`use_strict`, a CPU
backend whose arrays refuse to mix with NumPy arrays exactly as CuPy's do.
"""
from __future__ import annotations

import functools
import operator
import os
import threading
import time
import types

import numpy as np

#: Compute dtype of every tier-2/3 layer; gradient checks switch a model to float64.
DTYPE = np.float32
#: Dtype used by finite-difference gradient checks.
CHECK_DTYPE = np.float64

_state = {"module": np, "name": "cpu", "device": "CPU (NumPy)"}


class _XPProxy:
    """Forwards every attribute to the active array module (numpy, cupy or strict)."""

    def __getattr__(self, name):
        return getattr(_state["module"], name)

    def __repr__(self):
        return f"<xp proxy for {_state['device']}>"


xp = _XPProxy()


# --------------------------------------------------------------------------- switching
def use_cpu() -> None:
    """Make ``xp`` NumPy (the default)."""
    _state.update(module=np, name="cpu", device="CPU (NumPy)")


def gpu_unavailable_reason() -> str | None:
    """None when CuPy and a CUDA device are usable, otherwise a short reason."""
    try:
        import cupy  # noqa: F401
    except Exception as exc:  # ImportError, or a broken CUDA install
        return f"CuPy is not installed ({type(exc).__name__}); install it with pip install 'nnott[gpu]'"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return f"CuPy found no CUDA device ({exc})"
    if count < 1:
        return "CuPy found no CUDA device"
    return None


def use_gpu(warn: bool = True) -> bool:
    """Make ``xp`` CuPy. Returns True on success.

    Without CuPy or without a CUDA device it prints one warning line, stays on the CPU and
    returns False, so ``--gpu`` never crashes a run.
    """
    reason = gpu_unavailable_reason()
    if reason is not None:
        if warn:
            print(f"[warn] --gpu requested but {reason}; running on the CPU.", flush=True)
        use_cpu()
        return False
    import cupy

    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    _state.update(module=cupy, name="gpu", device=f"GPU {name} (CuPy {cupy.__version__})")
    return True


def use_strict() -> None:
    """Make ``xp`` the strict-device CPU backend (tests only): behaves like CuPy to host arrays."""
    _state.update(module=strict, name="strict", device="CPU strict-device (NumPy, CuPy rules)")


def backend_name() -> str:
    """'cpu', 'gpu' or 'strict'."""
    return _state["name"]


def device_name() -> str:
    """A human-readable device description for run headers."""
    return _state["device"]


def is_gpu() -> bool:
    return _state["name"] == "gpu"


def active_module():
    """The array module ``xp`` forwards to right now."""
    return _state["module"]


# --------------------------------------------------------------------------- transfers
def to_device(array, dtype=None):
    """Host (NumPy) array or scalar -> array of the active backend (explicit transfer)."""
    mod = _state["module"]
    if mod is np:
        out = np.asarray(array)
    elif mod is strict:
        out = strict.asarray(array)
    else:
        out = mod.asarray(array)
    if dtype is not None and out.dtype != dtype:
        out = out.astype(dtype)
    return out


asarray = to_device


def to_numpy(array):
    """Any backend array (or scalar) -> NumPy array on the host (explicit transfer)."""
    if isinstance(array, StrictArray):
        return array.get()
    if isinstance(array, np.ndarray):
        return array
    get = getattr(array, "get", None)  # cupy.ndarray.get() copies to host
    if callable(get) and type(array).__module__.startswith("cupy"):
        return get()
    return np.asarray(array)


def to_float(value) -> float:
    """A 0-d backend array -> Python float (a host sync on the GPU; use sparingly)."""
    return float(to_numpy(value))


def get_array_module(array):
    """numpy, cupy or the strict module, depending on where ``array`` lives."""
    if isinstance(array, StrictArray):
        return strict
    if type(array).__module__.startswith("cupy"):
        import cupy

        return cupy
    return np


# --------------------------------------------------------------------------- strict backend
def _refuse(what: str):
    raise TypeError(
        f"strict device backend: {what}. A host (NumPy) array met a device array; "
        "move it explicitly with common.backend.to_device() or to_numpy()."
    )


def _unwrap(obj, fname):
    """StrictArray -> ndarray; a bare ndarray is refused (as CuPy refuses it)."""
    if isinstance(obj, StrictArray):
        return obj._a
    if isinstance(obj, np.ndarray):
        _refuse(f"{fname}() got a NumPy array")
    if isinstance(obj, (list, tuple)):
        return type(obj)(_unwrap(o, fname) for o in obj)
    return obj


def _wrap(obj):
    if isinstance(obj, np.ndarray):
        return StrictArray(obj)
    if isinstance(obj, tuple):
        return tuple(_wrap(o) for o in obj)
    if isinstance(obj, list):
        return [_wrap(o) for o in obj]
    if isinstance(obj, np.generic):  # numpy scalar results become 0-d device arrays, as in CuPy
        return StrictArray(np.asarray(obj))
    return obj


def _strict_fn(fn, fname):
    def call(*args, **kwargs):
        args = [_unwrap(a, fname) for a in args]
        kwargs = {k: _unwrap(v, fname) for k, v in kwargs.items()}
        return _wrap(fn(*args, **kwargs))

    call.__name__ = fname
    call.__doc__ = getattr(fn, "__doc__", None)
    return call


class StrictArray:
    """A NumPy array pretending to live on a device.

    Like ``cupy.ndarray``: ``np.asarray(a)`` and any NumPy function or operator that meets a
    host array raise TypeError; ``a.get()`` is the explicit copy back to the host.
    """

    __slots__ = ("_a",)
    __array_priority__ = 1000

    def __init__(self, a):
        self._a = a

    # explicit transfer
    def get(self):
        return self._a.copy()

    # implicit conversion is refused, as in CuPy
    def __array__(self, dtype=None, copy=None):
        _refuse("implicit conversion to a NumPy array is not allowed")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        _refuse(f"NumPy ufunc {ufunc.__name__} was applied to a device array")

    def __array_function__(self, func, types, args, kwargs):
        _refuse(f"NumPy function {func.__name__} was applied to a device array")

    def __float__(self):
        return float(self._a)

    def __int__(self):
        return int(self._a)

    def __bool__(self):
        return bool(self._a)

    def __index__(self):
        return operator.index(self._a)

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (StrictArray(v) if isinstance(v, np.ndarray) else _wrap(v) for v in self._a)

    def __repr__(self):
        return f"StrictArray({self._a!r})"

    def __getitem__(self, key):
        return _wrap(self._a[_unwrap(key, "__getitem__")])

    def __setitem__(self, key, value):
        self._a[_unwrap(key, "__setitem__")] = _unwrap(value, "__setitem__")

    def __getattr__(self, name):
        if name.startswith("__"):  # no __array_interface__, __dlpack__...: no back doors to NumPy
            raise AttributeError(name)
        attr = getattr(self._a, name)
        if callable(attr):
            return _strict_fn(attr, name)
        return _wrap(attr)

    # ndarray attributes that are properties, not methods
    @property
    def T(self):
        return StrictArray(self._a.T)

    @property
    def shape(self):
        return self._a.shape

    @property
    def dtype(self):
        return self._a.dtype

    @property
    def ndim(self):
        return self._a.ndim

    @property
    def size(self):
        return self._a.size

    @property
    def nbytes(self):
        return self._a.nbytes

    @property
    def strides(self):
        return self._a.strides


def _binary(name):
    op = getattr(operator, name)

    def method(self, other):
        return _wrap(op(self._a, _unwrap(other, f"operator {name}")))

    def rmethod(self, other):
        return _wrap(op(_unwrap(other, f"operator {name}"), self._a))

    def imethod(self, other):
        iop = getattr(operator, "i" + name.rstrip("_") if name.endswith("_") else "i" + name)
        self._a = iop(self._a, _unwrap(other, f"operator i{name}"))
        return self

    return method, rmethod, imethod


for _dunder, _name in (("add", "add"), ("sub", "sub"), ("mul", "mul"), ("truediv", "truediv"),
                       ("floordiv", "floordiv"), ("mod", "mod"), ("pow", "pow"), ("matmul", "matmul"),
                       ("and", "and_"), ("or", "or_"), ("xor", "xor")):
    _m, _r, _i = _binary(_name)
    setattr(StrictArray, f"__{_dunder}__", _m)
    setattr(StrictArray, f"__r{_dunder}__", _r)
    setattr(StrictArray, f"__i{_dunder}__", _i)
for _name in ("lt", "le", "eq", "ne", "gt", "ge"):
    setattr(StrictArray, f"__{_name}__", _binary(_name)[0])
for _name in ("neg", "pos", "abs", "invert"):
    setattr(StrictArray, f"__{_name}__", (lambda op: lambda self: _wrap(op(self._a)))(getattr(operator, _name)))
StrictArray.__hash__ = None


class _StrictNamespace(types.SimpleNamespace):
    """A module-like view of NumPy whose functions take and return StrictArrays."""

    def __init__(self, base, path):
        super().__init__()
        object.__setattr__(self, "_base", base)
        object.__setattr__(self, "_path", path)

    def __getattr__(self, name):
        attr = getattr(self._base, name)
        if isinstance(attr, types.ModuleType):
            return _StrictNamespace(attr, f"{self._path}.{name}")
        if isinstance(attr, type) or not callable(attr):
            return attr  # dtypes, constants (pi, newaxis), exception classes
        return _strict_fn(attr, f"{self._path}.{name}")

    # host -> "device" transfers are the only way in
    def asarray(self, obj, dtype=None):
        if isinstance(obj, StrictArray):
            return obj if dtype is None else StrictArray(obj._a.astype(dtype, copy=False))
        return StrictArray(np.array(obj, dtype=dtype))

    def array(self, obj, dtype=None, copy=True):
        if isinstance(obj, StrictArray):
            return StrictArray(np.array(obj._a, dtype=dtype, copy=copy))
        return StrictArray(np.array(obj, dtype=dtype))

    def asnumpy(self, obj):
        return to_numpy(obj)

    def get_array_module(self, *arrays):
        return self

    def __repr__(self):
        return f"<strict device backend {self._path}>"


strict = _StrictNamespace(np, "strict")


# --------------------------------------------------------------------------- cores and matrix products
# NNOTT spreads work over the CPU cores in one of two ways (its *parallelism*):
#
# * "blocks" (the default): at first use NNOTT notes how many threads NumPy's BLAS was given
#   (OPENBLAS_NUM_THREADS and friends; by default one per core), keeps that many worker threads
#   of its own, and sets BLAS to ONE thread. Every multi-core step is then a list of blocks
#   shared out to the workers (run_blocks), each block doing its copies, additions and
#   one-thread matrix products on its own core. Mixing the two kinds of threads was
#   measured to cost up to 1.5x: after a two-thread BLAS call, OpenBLAS's helper thread keeps
#   spinning for a while and takes a core away from the workers.
# * "blas": one Python thread does everything, and BLAS runs its matrix products on all the
#   cores itself. Handing a block to a worker thread and waiting for it costs 20-100 us (a
#   thread wake-up and the GIL), which a small model's blocks do not pay back: LeNet-5's
#   training step measured 5.9 ms this way against 6.1-8.5 ms with worker threads, while
#   BaselineCNN and every larger model were 1.1-1.3x faster with them.
#
# choose_parallelism() picks one from the forward FLOPs of a batch (SMALL_MODEL_FLOPS); the
# Trainer, the benchmark and the layer profiler call it once the model and batch are known.

#: Work smaller than this (bytes) runs as one block on the calling thread (see blocks_of).
SMALL_WORK_BYTES = 2**17
#: ... and memory-bound passes (ReLU, batch norm, pooling: a few cheap operations per value)
#: under this size: handing work to a worker thread and waiting for it costs about 50-100 us
#: here, while two cores make such a pass at most 1.4x faster (they share the memory bus).
SMALL_PASS_BYTES = 2**21
#: Matrix products of at least this many multiply-adds are split into one block per worker.
GEMM_SPLIT_MIN_MACS = 2**24
#: A model whose forward pass over one batch costs fewer FLOPs than this runs with "blas"
#: parallelism (LeNet-5 at batch 64: 53 MFLOP; BaselineCNN: 954 MFLOP).
SMALL_MODEL_FLOPS = 2**28
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
    ``SMALL_MODEL_FLOPS``, else "blocks"; ``mode`` "blocks" or "blas" forces one (the
    ``--parallelism`` flag of the benchmark and the profiler). Returns the name; nothing
    changes off the CPU."""
    if mode not in ("auto", "blocks", "blas"):
        raise ValueError(f"parallelism must be auto, blocks or blas, got {mode!r}")
    if _state["name"] == "cpu":
        if mode == "blas" or (mode == "auto" and forward_flops < SMALL_MODEL_FLOPS):
            use_blas_threads(cores)
        else:
            set_cpu_workers(cores)
    return parallelism()


def parallelism() -> str:
    """"blocks" (NNOTT's worker threads, one-thread BLAS), "blas" (BLAS's own threads), or the
    backend's name off the CPU."""
    return _parallelism if _state["name"] == "cpu" else _state["name"]


def cpu_cores() -> int:
    """How many cores NNOTT uses on the CPU (worker threads or BLAS threads)."""
    if _cores is None:
        set_cpu_workers()
    return _cores


def cpu_workers() -> int:
    """How many blocks :func:`run_blocks` works on at once (1 off the CPU backend)."""
    if _state["name"] != "cpu":
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
# microsecond, and after SPIN_SECONDS without work is sent to sleep by a small "parker" thread.
# The caller waits for the workers' shares the same way. Where the C library has no spinlocks
# (macOS, Windows), or with SPIN_SECONDS = 0, the workers sleep on ordinary locks.

#: Seconds an idle worker spins (one core busy-waiting) before it sleeps; 0: never spin.
SPIN_SECONDS = 0.02


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

    A pthread spinlock held closed when SPIN_SECONDS > 0 and the C library has them (the waiter
    busy-waits in C, the GIL released), else a threading.Lock (the waiter sleeps)."""

    def __init__(self):
        if SPIN_SECONDS > 0 and _SPIN is not None:
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
        SPIN_SECONDS to sleep. Returns whether it is asleep or on its way."""
        with self.lock:
            if self.state == "spinning" and self.job is None and now - self.idle_since >= SPIN_SECONDS:
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
    """Every SPIN_SECONDS, send the workers that have been idle that long to sleep; sleep itself
    while every worker does."""
    while True:
        _parker_awake.wait()
        time.sleep(SPIN_SECONDS)
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


#: Bytes of one block of :func:`blocks_of` and :func:`elementwise` unless the caller names a size.
#: Each block costs tens of microseconds besides its arithmetic (NumPy's call set-up, with two
#: threads taking turns at the interpreter lock), which on this project's 2-core Intel machine
#: outweighed what a block that fits one core's cache saves: BatchNorm2D's forward pass on
#: 64x28x28x32 took 5.9 ms in blocks of 64 KiB, 2.5 ms in blocks of 1 MiB and 2.1 ms in blocks
#: of 4 MiB (no faster from there on); max-pool and ReLU gained 1.2-1.5x the same way.
BLOCK_BYTES = 2**22


def blocks_of(total: int, item_bytes: int, block_bytes: int | None = None, small_bytes: int | None = None):
    """Ranges (i0, i1) covering ``range(total)``, each about ``block_bytes`` of items of
    ``item_bytes`` (default ``BLOCK_BYTES``, read at each call): at least one item per block and
    at least one block per worker. One block on
    a GPU (no cache to fit), and for work under ``small_bytes`` (default ``SMALL_WORK_BYTES``),
    which costs less than handing it to the workers."""
    small = SMALL_WORK_BYTES if small_bytes is None else small_bytes
    block_bytes = BLOCK_BYTES if block_bytes is None else block_bytes
    if total == 0 or _state["name"] == "gpu" or total * item_bytes <= small:
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
    Inputs that are not contiguous are copied first; ``out`` must be contiguous."""
    flat_out = out.reshape(-1)
    flat_in = [xp.ascontiguousarray(a).reshape(-1) for a in inputs]
    blocks = blocks_of(flat_out.size, out.itemsize, block_bytes, SMALL_PASS_BYTES)
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


def _split(total, parts):
    step = -(-total // parts)
    return [(i, min(total, i + step)) for i in range(0, total, step)]


def gemm(a, b, out=None):
    """``a @ b`` (into ``out`` when given); a: (M, K), b: (K, N).

    A product of at least ``GEMM_SPLIT_MIN_MACS`` multiply-adds is split into one block of rows
    (or of columns, when N > M) per worker and run with :func:`run_blocks`; smaller ones run
    whole on one thread, where splitting would cost more than it saves. CuPy and the strict
    backend get a plain ``matmul``.
    """
    m, k = a.shape
    n = b.shape[1]
    workers = cpu_workers() if type(a) is np.ndarray else 1
    if workers <= 1 or m * n * k < GEMM_SPLIT_MIN_MACS:
        return xp.matmul(a, b, out=out)
    if out is None:
        out = xp.empty((m, n), dtype=xp.result_type(a, b))
    if m >= n:
        run_blocks(_split(m, workers), lambda r0, r1, _buf: xp.matmul(a[r0:r1], b, out=out[r0:r1]))
    else:
        run_blocks(_split(n, workers), lambda c0, c1, _buf: xp.matmul(a, b[:, c0:c1], out=out[:, c0:c1]))
    return out


#: Per-channel work on channels-last rows (M, C) views them as rows of about this many values.
WIDE_VALUES = 8192


def _wide(a, reps):
    """Contiguous (M, C) -> its first M - M % reps rows as (M // reps, reps * C), and the rest (M % reps, C)."""
    k = a.shape[0] - a.shape[0] % reps
    return a[:k].reshape(k // reps, reps * a.shape[1]), a[k:]


def channel_map(ufunc, a, vec, out):
    """``out = ufunc(a, vec)`` for contiguous channels-last rows ``a, out: (M, C)`` and ``vec: (C,)``.

    Broadcasting ``vec`` over (M, C) makes NumPy run its inner loop once per row of C values,
    and the start of a loop costs as much as a few hundred values (C = 32: 1.08 ms for 1.6 M
    values against 0.19 ms for a same-shape add). So R = WIDE_VALUES // C rows are taken at a
    time, as one row of R*C values, against ``vec`` repeated R times: the same arithmetic in
    long loops. Rows left over (M % R) are done the plain way.
    """
    reps = max(1, WIDE_VALUES // vec.shape[0])
    a_wide, a_rest = _wide(a, reps)
    out_wide, out_rest = _wide(out, reps)
    if a_wide.size:
        ufunc(a_wide, xp.tile(vec, reps), out=out_wide)
    if a_rest.size:
        ufunc(a_rest, vec, out=out_rest)
    return out


_vectors = {}  # (length, value, dtype, backend) -> a constant vector, for column_sums and row_means


def _constant_vector(length, value, dtype):
    key = (length, value, dtype, _state["name"])
    vec = _vectors.get(key)
    if vec is None:
        if len(_vectors) > 64:
            _vectors.clear()
        vec = _vectors[key] = xp.full(length, value, dtype=dtype)
    return vec


def column_sums(a):
    """``a: (M, C) -> (C,)``: the sum of every column, as one matrix-vector product ``ones(M) @ a``.

    This is the per-channel sum of channels-last activations (bias gradients, batch-norm means).
    ``a.sum(axis=0)`` walks the M short rows one at a time; the product runs in BLAS and was
    measured 3-10x faster here for C <= 128 (e.g. 50176 x 6: 0.81 ms -> 0.08 ms).
    """
    return _constant_vector(a.shape[0], 1.0, a.dtype) @ a


def row_means(a):
    """``a: (R, C) -> (R,)``: the mean of every row, as one matrix-vector product ``a @ (1/C)``
    (LayerNorm's per-position statistics over channels-last rows)."""
    return a @ _constant_vector(a.shape[1], 1.0 / a.shape[1], a.dtype)
