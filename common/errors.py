"""Errors a user can cause. Entry points turn them into one line and a non-zero exit code."""
from __future__ import annotations

import errno
import os
import re


class UserError(Exception):
    """Something the user can fix: a missing file, an unknown name, a shape that does not fit.

    The message says what is wrong and what to do; no traceback is shown for it.
    """


class DataError(UserError):
    """A dataset could not be found, downloaded, verified or parsed."""


class CheckpointError(UserError):
    """A checkpoint file is missing, corrupt, or does not fit the model being loaded."""


class UsageError(UserError):
    """A command-line mistake that argparse cannot see alone (two flags that do not go together,
    a list whose length does not fit another flag). Entry points exit with code 2 for it."""


# What a user can do about the operating-system errors they can cause, by errno.
_OS_ADVICE = {
    errno.EROFS: ("is on a read-only file system", "write somewhere else (--run-dir, --save)"),
    errno.ENOSPC: ("cannot be written: no space left on the device", "free some space or write elsewhere"),
    errno.EDQUOT: ("cannot be written: the disk quota is exceeded", "free some space or write elsewhere"),
    errno.EISDIR: ("is a folder, not a file", "give a file path"),
    errno.ENOTDIR: ("has a file where a folder is expected", "give a folder path"),
    errno.EEXIST: ("already exists", "remove it or choose another name"),
    errno.EACCES: ("cannot be accessed: permission denied", "check its permissions or write elsewhere"),
    errno.EPERM: ("cannot be accessed: operation not permitted", "check its permissions or write elsewhere"),
    errno.ENOENT: ("does not exist", "check the path"),
}


def os_error_errno(exc: BaseException) -> int | None:
    """The errno of an OSError, also when h5py only names it in its message ('errno = 28')."""
    code = getattr(exc, "errno", None)
    if code:
        return code
    text = str(exc)
    match = re.search(r"errno\s*=\s*(\d+)", text)
    if match:
        return int(match.group(1))
    for code, (_, _) in _OS_ADVICE.items():
        if os.strerror(code) in text:
            return code
    return None


def describe_os_error(exc: BaseException, path=None) -> str:
    """One line for an OSError a user can cause: which path, what is wrong, what to do."""
    code = os_error_errno(exc)
    where = path if path is not None else (getattr(exc, "filename", None) or "a file")
    if code in _OS_ADVICE:
        what, todo = _OS_ADVICE[code]
        return f"{where} {what}; {todo}"
    text = " ".join(str(getattr(exc, "strerror", None) or exc).split()) or type(exc).__name__
    return f"{where}: {text}"
