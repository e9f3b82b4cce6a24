"""Checks made before anything is written or trained, so a bad command fails in its first second.

argparse checks one flag at a time (a number is finite and in range). What is left for here:

- flag combinations (``--early-stopping`` without a validation set, ``--skip-train`` with
  nothing to evaluate): :class:`~common.errors.UsageError`, exit code 2;
- output paths: ``--save`` must be a file we can create, ``--run-dir`` a folder we can create,
  the folder of a ``--resume`` checkpoint writable (the run goes on there): UserError, exit 1.

:func:`check_run_flags` runs them all; each launcher calls it right after parsing.
"""
from __future__ import annotations

import os
from pathlib import Path

from common.errors import UsageError, UserError


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_creatable(folder: Path, flag: str, what: str) -> None:
    """``folder`` exists as a writable folder, or can be created inside a writable one."""
    base = _nearest_existing(folder)
    if not base.is_dir():
        raise UserError(f"{flag}: {base} is a file, so {what} cannot be created under it; "
                        "give a path inside a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise UserError(f"{flag}: {base} is not writable (read-only or permission denied); "
                        "write somewhere else")


def check_output_file(path, flag: str = "--save") -> None:
    """``path`` names a file that can be written: not a folder, its folder creatable and writable."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise UserError(f"{flag} {path} is a folder; give a file path like {path / 'model.h5'}")
    if path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"{flag} {path} exists and is not writable (permission denied); choose another path")
    _check_creatable(path.parent, flag, path.name)


def check_output_dir(path, flag: str = "--run-dir") -> None:
    """``path`` is (or can become) a writable folder."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path} is a file; give a folder")
    _check_creatable(path, flag, "the run folder")


def check_input_file(path, flag: str) -> None:
    """``path`` is an existing file (not a folder)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"{flag} {path} does not exist; check the path (runs/<run>/last.h5)")
    if path.is_dir():
        raise UserError(f"{flag} {path} is a folder; give a checkpoint file such as {path / 'last.h5'}")


def check_run_flags(args) -> None:
    """Every check that needs only the flags and the file system (no data, no model)."""
    early = getattr(args, "early_stopping", False)
    if early and getattr(args, "val_split", None) == 0:
        raise UsageError("--early-stopping watches the validation set: add --val-split 0.1 (or more)")
    if getattr(args, "skip_train", False) and not (getattr(args, "load", None) or getattr(args, "resume", None)):
        raise UsageError("--skip-train evaluates a trained model: add --load PATH")
    for flag in ("load", "resume"):
        if getattr(args, flag, None):
            check_input_file(args.resume if flag == "resume" else args.load, f"--{flag}")
    if getattr(args, "resume", None):
        folder = Path(args.resume).expanduser().parent
        if not os.access(folder, os.W_OK | os.X_OK):
            raise UserError(f"--resume: the run folder {folder} is not writable (read-only or permission "
                            "denied); copy it somewhere writable and resume from there")
    elif getattr(args, "run_dir", None) is not None:
        check_output_dir(args.run_dir)
    if getattr(args, "save", None):
        check_output_file(args.save)
