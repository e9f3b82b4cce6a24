"""The ``xp`` proxy: one name for NumPy (CPU), CuPy (GPU) or the strict-device CPU backend; transfers.

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

import numpy as np

from common.backend.strict import StrictArray, strict

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


