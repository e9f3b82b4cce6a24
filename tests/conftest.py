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


# ---------------------------------------------------------------------------- what a skip needs
#: module that was missing -> the one command that installs it (PyTorch: the CPU wheel, not CUDA's GBs)
INSTALL_LINES = {
    "torch": "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu",
    "hypothesis": "pip install hypothesis",
    "PIL": "pip install Pillow",
    "h5py": "pip install h5py",
}


def missing_modules(terminalreporter) -> dict:
    """{module: number of tests skipped because it could not be imported}."""
    counts = {}
    for report in terminalreporter.stats.get("skipped", []):
        reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        for module in INSTALL_LINES:
            if f"could not import '{module}'" in reason or f"No module named '{module}'" in reason:
                counts[module] = counts.get(module, 0) + 1
    return counts


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """After a run with skips for a missing package, print the one line that installs it."""
    for module, n in missing_modules(terminalreporter).items():
        terminalreporter.write_line(f"{n} test{'s' if n != 1 else ''} skipped: {module} is not installed; "
                                    f"to run them: {INSTALL_LINES[module]}", yellow=True)
    deselected = sum(1 for item in terminalreporter.stats.get("deselected", [])
                     if getattr(item, "get_closest_marker", lambda name: None)("slow") is not None)
    if deselected and "not slow" in (config.getoption("markexpr") or ""):
        terminalreporter.write_line(f"{deselected} slow tests were left out; run everything with: "
                                    "python -m pytest -m \"slow or not slow\"")
