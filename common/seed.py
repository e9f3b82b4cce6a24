"""Seeding and RNG state: one call seeds everything, and the state goes into checkpoints.

Four random streams drive a run:

* Python's ``random`` module;
* NumPy's legacy global generator (``np.random.*``), which is also ``xp.random`` on the CPU
  and under the strict-device backend (dropout masks, stochastic depth);
* the host ``Generator`` returned by :func:`host_rng`, used for weight initialisation, so the
  CPU and the GPU start from the same weights;
* CuPy's generator (``xp.random`` on the GPU).

:func:`capture_rng_state` snapshots all of them as plain values and NumPy arrays (so the
snapshot fits in an HDF5 checkpoint) and :func:`restore_rng_state` puts them back: a resumed
run draws exactly the numbers the uninterrupted run would have drawn.
"""
from __future__ import annotations

import random

import numpy as np

from common import backend

_MAX_SEED = 2**32 - 1  # np.random.seed accepts [0, 2**32)

#: The process-wide host generator. Reseeding changes its state in place, so references
#: that modules already hold stay valid.
_HOST_RNG = np.random.Generator(np.random.PCG64(0))
#: Draws the seeds that CuPy is reseeded with at each capture (CuPy cannot export its state).
_CUPY_SEEDS = np.random.Generator(np.random.PCG64(0))


def seed_everything(seed: int) -> None:
    """Seed Python ``random``, NumPy's global generator, :func:`host_rng` and CuPy (on the GPU)."""
    seed = int(seed)
    if not 0 <= seed <= _MAX_SEED:
        raise ValueError(f"seed must be in [0, {_MAX_SEED}], got {seed}")
    random.seed(seed)
    np.random.seed(seed)
    _HOST_RNG.bit_generator.state = np.random.PCG64(seed).state
    _CUPY_SEEDS.bit_generator.state = np.random.PCG64([seed, 1]).state
    if backend.is_gpu():
        import cupy

        cupy.random.seed(seed)


def host_rng() -> np.random.Generator:
    """The host generator for weight initialisation (seed 0 until :func:`seed_everything`)."""
    return _HOST_RNG


def capture_rng_state() -> dict:
    """A snapshot of every random stream, made of plain values and NumPy arrays.

    On the GPU CuPy's generator state cannot be read, so capturing reseeds CuPy with a fresh
    seed drawn from a host stream and records that seed; restoring reseeds it the same way.
    The uninterrupted and the resumed run therefore continue from the same CuPy state.
    """
    version, internal, gauss_next = random.getstate()
    state = {
        "python": {"version": version, "internal": np.array(internal, dtype=np.uint32),
                   "gauss_next": gauss_next},
        "numpy_global": _copy(np.random.get_state()),
        "host": _copy(_HOST_RNG.bit_generator.state),
        "cupy_seeds": _copy(_CUPY_SEEDS.bit_generator.state),
    }
    if backend.is_gpu():
        import cupy

        cupy_seed = int(_CUPY_SEEDS.integers(_MAX_SEED))
        cupy.random.seed(cupy_seed)
        state["cupy_seeds"] = _copy(_CUPY_SEEDS.bit_generator.state)
        state["cupy_seed"] = cupy_seed
    return state


def restore_rng_state(state: dict) -> None:
    """Put back a snapshot made by :func:`capture_rng_state` (also after a checkpoint round trip)."""
    py = state["python"]
    random.setstate((int(py["version"]), tuple(int(v) for v in py["internal"]), py["gauss_next"]))
    name, keys, pos, has_gauss, cached = state["numpy_global"]
    np.random.set_state((str(name), np.asarray(keys, dtype=np.uint32), int(pos), int(has_gauss), float(cached)))
    _HOST_RNG.bit_generator.state = state["host"]
    _CUPY_SEEDS.bit_generator.state = state["cupy_seeds"]
    if "cupy_seed" in state and backend.is_gpu():
        import cupy

        cupy.random.seed(int(state["cupy_seed"]))


def _copy(value):
    """Deep copy of nested dicts/tuples/lists with arrays, so a snapshot never aliases live state."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(_copy(v) for v in value)
    if isinstance(value, np.ndarray):
        return value.copy()
    return value
