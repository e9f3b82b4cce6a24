"""Pieces of ``scripts/benchmark.py``: machine facts, the model catalogue and the timing worker.

``benchmark.py`` is the command line and the orchestration; every measurement runs in a
child process started from :mod:`scripts.bench.worker`, one process per model and framework,
so the peak memory each reports belongs to that model alone.
"""
