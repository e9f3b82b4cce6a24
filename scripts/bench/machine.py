"""What machine a benchmark ran on: CPU, cores, memory, library versions and BLAS threading.

Everything here is cheap and imports neither torch nor CuPy, so the parent process of the
benchmark stays light; the workers report their own thread counts and devices.
"""
from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from importlib import metadata

#: Environment variables that change which BLAS kernel runs or how many threads it uses.
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
              "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo, or platform's best guess elsewhere."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def blas_info() -> list[dict]:
    """NumPy's BLAS libraries as threadpoolctl sees them (library, version, kernel, threads).

    threadpoolctl is optional: without it the list holds NumPy's build-time BLAS name only.
    """
    import numpy as np

    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        try:
            deps = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
            return [{"internal_api": deps.get("name"), "version": deps.get("version"),
                     "num_threads": None, "architecture": None,
                     "note": "pip install threadpoolctl for the runtime kernel and thread count"}]
        except Exception:
            return []
    keep = ("user_api", "internal_api", "version", "num_threads", "architecture", "threading_layer")
    return [{k: lib.get(k) for k in keep} for lib in threadpool_info() if lib.get("user_api") == "blas"]


def blas_threads(default: int | None = None) -> int:
    """The thread count NumPy's BLAS uses now (threadpoolctl), else the usable cores."""
    for lib in blas_info():
        if lib.get("num_threads"):
            return int(lib["num_threads"])
    return default or usable_cores()


def machine_info() -> dict:
    """A JSON-ready description of this machine and its numerical libraries."""
    import numpy as np

    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "memory_gib": memory_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": package_version("torch"),
        "cupy": package_version("cupy") or package_version("cupy-cuda12x") or package_version("cupy-cuda11x"),
        "blas": blas_info(),
        "env": {k: os.environ.get(k) for k in THREAD_ENV},
        "load_average_at_start": load,
        "executable": Path(sys.executable).name,  # no machine paths in a committed report
    }


def describe(info: dict) -> str:
    """One or two human lines for the top of the printed table."""
    blas = info.get("blas") or [{}]
    b = blas[0]
    blas_txt = f"{b.get('internal_api') or 'BLAS'} {b.get('version') or ''}".strip()
    if b.get("architecture"):
        blas_txt += f" ({b['architecture']} kernel)"
    parts = [f"{info['cpu']}, {info['usable_cores']} cores",
             f"NumPy {info['numpy']} + {blas_txt}"]
    if info.get("torch"):
        parts.append(f"torch {info['torch']}")
    if info.get("load_average_at_start"):
        parts.append("load avg " + "/".join(f"{v:.2f}" for v in info["load_average_at_start"]))
    return " | ".join(parts)
