"""Shared fixtures: every test starts on the NumPy backend and the fast engine (worker-thread
parallelism) with a fresh seed and a private data dir."""
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _cpu_backend():
    """The NumPy backend with worker threads ("blocks"), whatever the previous test chose
    (the Trainer picks "blas" parallelism for small models)."""
    import engine
    from common import backend
    from engine import parallel

    backend.use_cpu()
    engine.use("fast")
    parallel.set_cpu_workers()
    yield
    backend.use_cpu()
    engine.use("fast")
    parallel.set_cpu_workers()


@pytest.fixture
def strict_backend():
    """Run the test body under the strict-device backend (CuPy's rules on the CPU)."""
    from common import backend

    backend.use_strict()
    try:
        yield backend
    finally:
        backend.use_cpu()
