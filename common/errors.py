"""Errors a user can cause. Entry points turn them into one line and a non-zero exit code."""


class UserError(Exception):
    """Something the user can fix: a missing file, an unknown name, a shape that does not fit.

    The message says what is wrong and what to do; no traceback is shown for it.
    """


class DataError(UserError):
    """A dataset could not be found, downloaded, verified or parsed."""


class CheckpointError(UserError):
    """A checkpoint file is missing, corrupt, or does not fit the model being loaded."""
