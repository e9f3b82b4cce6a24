"""Ctrl-C during training, shared by the three tiers: finish the step, then stop and save.

Python turns SIGINT into ``KeyboardInterrupt`` wherever the program happens to be, possibly
halfway through an optimizer step, when some weights are updated and others not. Saving
then would store a state no uninterrupted run ever had. So while training runs, the first
Ctrl-C only sets a flag; the trainer looks at it after each step and raises
``KeyboardInterrupt`` itself, at a clean point. A second Ctrl-C stops at once (and then
nothing new is saved: the previous checkpoint stays).
"""
from __future__ import annotations

import signal
import threading


class DeferredInterrupt:
    """Context manager: ``requested`` turns True on the first Ctrl-C, ``forced`` on the second."""

    def __init__(self, message="\n[interrupt] finishing this step, then saving a checkpoint "
                               "(Ctrl-C again to stop now)"):
        self.message = message
        self.requested = False
        self.forced = False
        self._previous = None

    def _handler(self, signum, frame):
        if self.requested:
            self.forced = True
            raise KeyboardInterrupt
        self.requested = True
        print(self.message, flush=True)

    def __enter__(self):
        self.requested = self.forced = False
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
        return False
