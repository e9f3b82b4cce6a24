"""The array backend: one ``xp`` name for NumPy (CPU), CuPy (GPU) or the strict-device CPU backend.

Two files, one concern each:

- :mod:`common.backend.arrays`: the ``xp`` proxy, switching devices, host/device transfers;
- :mod:`common.backend.strict`: the strict-device backend that refuses to mix host and device
  arrays, as CuPy does (tests run under it).

How the CPU cores are shared out (worker threads, BLAS threads) is the engine's business:
see :mod:`engine.parallel`.
"""
from common.backend.arrays import (CHECK_DTYPE, DTYPE, active_module, asarray, backend_name, device_name,
                                   get_array_module, gpu_unavailable_reason, is_gpu, to_device, to_float,
                                   to_numpy, use_cpu, use_gpu, use_strict, xp)
from common.backend.strict import StrictArray, strict

__all__ = ["CHECK_DTYPE", "DTYPE", "active_module", "asarray", "backend_name", "device_name", "get_array_module",
           "gpu_unavailable_reason", "is_gpu", "to_device", "to_float", "to_numpy", "use_cpu", "use_gpu",
           "use_strict", "xp", "StrictArray", "strict"]
