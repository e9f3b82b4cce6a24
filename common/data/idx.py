"""The IDX format of MNIST and Fashion-MNIST (gzipped or raw).

Header: two zero bytes, a type code, the number of dimensions ``d``, then ``d`` big-endian
uint32 sizes; the data follows in C order.  Images are ``(N, H, W)``, labels ``(N,)``.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from common.errors import DataError

_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def parse_idx(raw: bytes, name: str = "IDX data") -> np.ndarray:
    """Bytes of an IDX file -> array of its declared shape and type."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _TYPES:
        raise DataError(f"{name} is not an IDX file (bad magic number); expected MNIST-style "
                        "train-images-idx3-ubyte[.gz] files")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(v) for v in np.frombuffer(raw[4:header], dtype=">u4"))
    dtype = np.dtype(_TYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(shape) != ndim or len(raw) - header != expected:
        raise DataError(f"{name} is truncated or damaged: the header promises shape {shape} "
                        f"({expected} bytes) but {max(len(raw) - header, 0)} bytes follow; "
                        "download it again")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file; a ``.gz`` suffix (or gzip magic bytes) means gzipped."""
    path = Path(path)
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataError(f"{path} is a damaged gzip file ({exc}); download it again") from exc
    return parse_idx(raw, str(path))


def write_idx(path: Path, array: np.ndarray, compress: bool | None = None) -> None:
    """Write ``array`` (uint8) as IDX; gzipped when ``compress`` or the name ends in ``.gz``."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    raw = header + array.tobytes()
    path = Path(path)
    if compress if compress is not None else path.suffix == ".gz":
        raw = gzip.compress(raw, mtime=0)
    path.write_bytes(raw)
