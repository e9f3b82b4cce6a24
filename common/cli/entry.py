"""The entry wrapper: exit codes, Ctrl-C with a resume command, and the repository path."""
from __future__ import annotations

import shlex
import signal
import sys
import threading
import traceback
from contextlib import contextmanager
from pathlib import Path

from common.errors import UsageError, UserError, describe_os_error

class TrainingInterrupted(Exception):
    """Ctrl-C during training after a checkpoint was saved; run_main prints how to resume."""

    def __init__(self, checkpoint_path=None):
        self.checkpoint_path = None if checkpoint_path is None else Path(checkpoint_path)
        super().__init__(f"interrupted; checkpoint at {self.checkpoint_path}")


@contextmanager
def save_on_interrupt(save_fn):
    """Turn Ctrl-C inside the block into TrainingInterrupted(save_fn()).

    ``save_fn`` writes a checkpoint and returns its path (or None when there is nothing to save).
    """
    try:
        yield
    except KeyboardInterrupt:
        raise TrainingInterrupted(save_fn()) from None


@contextmanager
def sigterm_as_interrupt():
    """Inside the block, SIGTERM (``kill PID``, a batch system's time limit) does what Ctrl-C does.

    The handler calls whatever handles SIGINT at that moment: during training that is the
    trainer's "finish this step, save a checkpoint, stop" handler, elsewhere Python's own
    (KeyboardInterrupt). Only the main thread can set signal handlers; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        on_interrupt = signal.getsignal(signal.SIGINT)
        if callable(on_interrupt):
            on_interrupt(signal.SIGINT, frame)
        else:                                   # SIGINT ignored or default: stop like Ctrl-C anyway
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def without_options(args, names) -> list:
    """``args`` without the options ``names`` (each with its value, as ``--x V`` or ``--x=V``)."""
    kept, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a in names:
            skip = True
        elif not a.startswith(tuple(f"{n}=" for n in names)):
            kept.append(a)
    return kept


def without_resume(args) -> list:
    """``args`` without any --resume/--load and its value (a resume command adds its own)."""
    return without_options(args, ("--resume", "--load"))


def resume_command(checkpoint_path, argv=None, prog=None) -> str:
    """The command line that continues this run: the same arguments with --resume PATH."""
    kept = without_resume(sys.argv[1:] if argv is None else argv)
    prog = prog or sys.argv[0]
    head = ["python", prog] if prog.endswith(".py") else [Path(prog).name]
    return shlex.join(head + kept + ["--resume", str(checkpoint_path)])


def run_main(main_fn, argv=None) -> int:
    """Call ``main_fn(argv)`` and turn its outcome into an exit code (0, 1 or 130).

    UsageError (two flags that do not go together) -> 'error: <msg>', 2. UserError -> 'error: <msg>', 1.
    An OSError (read-only, disk full, is a folder, exists, permission denied) -> one line naming the
    path and what to do, 1. Any other exception -> one line with its type, 1 (``--debug`` shows the
    traceback). Ctrl-C or SIGTERM -> 130, with a resume command when a checkpoint was saved.
    argparse's own usage errors (SystemExit 2) pass through.
    """
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        with sigterm_as_interrupt():
            code = main_fn(argv)
        return 0 if code is None else int(code)
    except TrainingInterrupted as exc:
        if exc.checkpoint_path is None:
            print("\ninterrupted: no checkpoint was saved", file=sys.stderr)
        else:
            print(f"\ninterrupted: checkpoint saved to {exc.checkpoint_path}; resume with: "
                  f"{resume_command(exc.checkpoint_path, argv)}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except UserError as exc:
        if debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 1
    except OSError as exc:
        if debug:
            traceback.print_exc()
        print(f"error: {describe_os_error(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:
        if debug:
            traceback.print_exc()
            return 1
        message = " ".join(str(exc).split())
        print(f"error: {type(exc).__name__}: {message} (run with --debug for the traceback)", file=sys.stderr)
        return 1


def bootstrap_repo_path(entry_file=None) -> Path:
    """Put the repository root (the parent of ``entry_file``'s folder) first on sys.path.

    ``entry_file`` defaults to the running script (``__main__.__file__``).
    """
    if entry_file is None:
        entry_file = getattr(sys.modules["__main__"], "__file__", None) or sys.argv[0]
    root = Path(entry_file).resolve().parents[1]
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return root
