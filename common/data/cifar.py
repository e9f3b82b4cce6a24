"""CIFAR-10 from its "python version" tarball, without running arbitrary pickled code.

The tarball holds ``cifar-10-batches-py/data_batch_1..5`` and ``test_batch``: pickled dicts
with ``"data"`` (10000, 3072) uint8 (rows are R, G, B planes of 32x32) and ``"labels"``.
A plain ``pickle.load`` would run whatever the file asks for, so :class:`SafeUnpickler` only
lets through the few NumPy callables needed to rebuild an array.
"""
from __future__ import annotations

import codecs
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

from common.errors import DataError

CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck"]
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_BATCH = "test_batch"


def _numpy_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct  # NumPy 2
    except ImportError:  # pragma: no cover - NumPy 1
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


class SafeUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, bytes, numbers and NumPy arrays; refuses every other callable."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 3 writes bytes into a protocol-2 pickle
    }

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")
        if name == "_reconstruct":
            return _numpy_reconstruct()
        if module == "_codecs":
            return codecs.encode
        return getattr(np, name)


def safe_unpickle(raw: bytes):
    """Load a pickle written by Python 2 or 3 (latin1 is what NumPy advises for Python 2 arrays)."""
    return SafeUnpickler(io.BytesIO(raw), encoding="latin1").load()


def _batch(tar: tarfile.TarFile, name: str) -> tuple[np.ndarray, np.ndarray]:
    member = next((m for m in tar.getmembers() if m.isfile() and Path(m.name).name == name), None)
    if member is None:
        raise DataError(f"{tar.name} has no {name}; is it the CIFAR-10 python tarball?")
    try:
        d = safe_unpickle(tar.extractfile(member).read())
        d = {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}
        data = np.asarray(d["data"], dtype=np.uint8)
        labels = np.asarray(d["labels"], dtype=np.int64)
    except (pickle.UnpicklingError, KeyError, TypeError, ValueError, EOFError, AttributeError) as exc:
        raise DataError(f"{name} in {tar.name} is not a valid CIFAR-10 batch ({exc})") from exc
    return data.reshape(-1, 3, 32, 32), labels


def read_cifar10(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``x_train (50000, 3, 32, 32) uint8, y_train, x_test (10000, 3, 32, 32), y_test``."""
    try:
        with tarfile.open(path, "r:gz") as tar:
            train = [_batch(tar, n) for n in TRAIN_BATCHES]
            x_test, y_test = _batch(tar, TEST_BATCH)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"{path} is not a readable CIFAR-10 tarball ({exc}); delete it and "
                        "download again") from exc
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    return x_train, y_train, x_test, y_test
