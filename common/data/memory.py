"""A memory estimate before a large allocation, so a run that cannot fit says so in one line.

``np.empty`` of 50 GiB may succeed (Linux promises memory lazily) and the run then dies
minutes later, or it fails with a bare ``MemoryError``. Comparing the bytes an array will
take with the memory the machine has free (``MemAvailable`` in ``/proc/meminfo``) turns that
into a message that says what to change.
"""
from __future__ import annotations

import os

from common.errors import UserError

#: Share of the free memory one allocation may take (the run needs the rest for the model).
MAX_SHARE = 0.8


def available_bytes() -> int | None:
    """Memory the machine can hand out now, or None where it cannot be read."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_fits(nbytes: int, what: str, advice: str, available: int | None = None) -> None:
    """Raise a one-line UserError when ``nbytes`` would take more than MAX_SHARE of the free memory."""
    free = available_bytes() if available is None else available
    if free is not None and nbytes > MAX_SHARE * free:
        raise UserError(f"{what} needs {gib(nbytes)} of memory but only {gib(free)} is free; {advice}")
