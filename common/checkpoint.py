"""Checkpoints: one HDF5 file with everything needed to continue a run as if never stopped.

Layout of a file (``h5py``; never pickle, so loading a checkpoint cannot run code)::

    /                     attrs: format, format_version, nnott_version, epoch, step, config (JSON)
    /model/<dotted name>  one dataset per tensor (Module.state_dict())
    /optimizer/...        nested state: groups for dicts, lists and tuples,
    /scheduler/...        datasets for arrays, attributes for Python scalars
    /rng/...
    /history/<metric>     lists of floats, stored as float64 datasets
    /extra/...

Every value round-trips exactly: arrays bitwise with their dtype; Python ``int`` (any size),
``float``, ``bool``, ``str`` and ``None``; NumPy scalars; lists and tuples, nested at will.

Writes are atomic: the file is written under a temporary name in the same folder
(``.last.h5.<pid>-<random>.tmp``), flushed to disk and renamed over the old one, so a crash
mid-save leaves the previous checkpoint. The temporary file of a process that was killed
during a save is removed by the next save to the same path.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from common.backend import to_numpy
from common.errors import CheckpointError, describe_os_error

CHECKPOINT_FORMAT_VERSION = 1
_FORMAT = "nnott-checkpoint"
_SECTIONS = ("model_state", "optimizer_state", "scheduler_state", "rng_state", "history", "extra")
_GROUP = {"model_state": "model", "optimizer_state": "optimizer", "scheduler_state": "scheduler",
          "rng_state": "rng", "history": "history", "extra": "extra"}
#: Config keys that must agree between a checkpoint and the model it is loaded into.
COMPAT_KEYS = ("tier", "architecture", "input_shape", "num_classes")
#: The launcher of each tier, for messages about a checkpoint from another tier.
TIER_LAUNCHERS = {"scalar": "scalar/main.py", "vectorized": "vectorized/main.py",
                  "convolutional": "convolutional/main.py"}

_KIND, _KEYS, _LEN = "__kind__", "__keys__", "__len__"  # reserved attribute names
_INT64 = (-(2**63), 2**63 - 1)


@dataclass
class Checkpoint:
    """Everything a run needs to continue. ``path`` is set by :func:`load_checkpoint` (not stored)."""

    model_state: dict
    optimizer_state: dict
    scheduler_state: dict
    epoch: int
    step: int
    rng_state: dict
    history: dict
    config: dict
    extra: dict = field(default_factory=dict)
    path: Path | None = field(default=None, compare=False)


def library_version() -> str:
    """The installed NNOTT version, or 'unknown' when running from a plain checkout."""
    try:
        from importlib.metadata import version

        return version("nnott")
    except Exception:
        return "unknown"


# --------------------------------------------------------------------------- saving
def save_checkpoint(path, ckpt: Checkpoint) -> Path:
    """Write ``ckpt`` to ``path`` atomically (parent folders are created). Returns the path."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise CheckpointError(f"cannot write checkpoint {path}: it is a folder; give a file path like "
                              f"{path / 'model.h5'}")
    blocker = next((p for p in path.parents if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise CheckpointError(f"checkpoint {path} cannot be written: {blocker} is a file, not a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp", dir=path.parent)
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; a checkpoint is an ordinary file
    except OSError as exc:
        raise CheckpointError(f"checkpoint {describe_os_error(exc, path)}") from exc
    try:
        with h5py.File(tmp, "w") as f:
            _write_root(f, ckpt)
        with open(tmp, "rb+") as fh:  # h5py's flush does not fsync; do it before the rename
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:  # also Ctrl-C: the old file stays, the temp file goes
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise CheckpointError(f"checkpoint {describe_os_error(exc, path)}") from exc
        raise
    _fsync_dir(path.parent)
    return path


def remove_stale_temp_files(path) -> list[Path]:
    """Delete ``.<name>.<pid>-*.tmp`` files left next to ``path`` by a save that was killed.

    A temp file whose process still runs (another save in progress) is kept. Returns the
    removed paths.
    """
    path = Path(path)
    removed = []
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        owner = tmp.name[len(path.name) + 2:].split("-", 1)[0]
        if owner.isdigit() and int(owner) != os.getpid() and _process_alive(int(owner)):
            continue
        try:
            tmp.unlink()
            removed.append(tmp)
        except OSError:
            pass
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but belongs to someone else
        return True
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); harmless to skip where unsupported."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_root(f: h5py.File, ckpt: Checkpoint) -> None:
    f.attrs["format"] = _FORMAT
    f.attrs["format_version"] = CHECKPOINT_FORMAT_VERSION
    f.attrs["nnott_version"] = library_version()
    f.attrs["epoch"] = int(ckpt.epoch)
    f.attrs["step"] = int(ckpt.step)
    try:
        f.attrs["config"] = json.dumps(ckpt.config, default=_json_default, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"checkpoint config is not JSON-serialisable: {exc}") from exc
    model = {}
    for name, value in ckpt.model_state.items():
        value = _host(value)
        if not isinstance(value, np.ndarray):
            raise TypeError(f"model_state[{name!r}] is {type(value).__name__}, expected an array")
        model[name] = value
    for attr in _SECTIONS:
        value = model if attr == "model_state" else getattr(ckpt, attr)
        if not isinstance(value, dict):
            raise TypeError(f"checkpoint {attr} must be a dict, got {type(value).__name__}")
        _put(f, _GROUP[attr], value, _GROUP[attr])


def _json_default(obj):
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


def _host(value):
    """Device arrays (CuPy, strict backend) become NumPy arrays; anything else is unchanged."""
    if isinstance(value, (np.ndarray, np.generic)) or not hasattr(value, "shape"):
        return value
    return to_numpy(value)


def _child_name(key, index: int) -> str:
    """The HDF5 name of a dict member: the key itself when it is a safe name, else '#index'."""
    if (isinstance(key, str) and key and key != "." and "/" not in key and "\x00" not in key
            and not key.startswith(("#", "__"))):
        return key
    return f"#{index}"


def _put(group: h5py.Group, name: str, value, where: str) -> None:
    """Store ``value`` as member ``name`` of ``group`` (``where`` names it in error messages)."""
    value = _host(value)
    if isinstance(value, (np.str_, np.bytes_)):
        value = value.item()
    if isinstance(value, dict):
        keys = list(value)
        for k in keys:
            if isinstance(k, bool) or not isinstance(k, (str, int)):
                raise TypeError(f"{where}: dict key {k!r} must be a str or an int")
        g = group.create_group(name)
        g.attrs[_KIND] = "dict"
        g.attrs[_KEYS] = json.dumps(keys, ensure_ascii=False)
        for i, k in enumerate(keys):
            _put(g, _child_name(k, i), value[k], f"{where}/{k}")
    elif isinstance(value, (list, tuple)):
        kind = "tuple" if isinstance(value, tuple) else "list"
        packed = _packed(value)
        if packed is not None:  # a flat list of floats or ints: one dataset
            group.create_dataset(name, data=packed).attrs[_KIND] = kind
            return
        g = group.create_group(name)
        g.attrs[_KIND] = kind
        g.attrs[_LEN] = len(value)
        for i, v in enumerate(value):
            _put(g, str(i), v, f"{where}/{i}")
    elif isinstance(value, np.ndarray):
        if value.dtype.kind in "OUV":
            raise TypeError(f"{where}: arrays of dtype {value.dtype} cannot be stored")
        group.create_dataset(name, data=value).attrs[_KIND] = "ndarray"
    elif isinstance(value, np.generic):
        group.create_dataset(name, data=value).attrs[_KIND] = "npscalar"
    elif value is None:
        group.attrs[name] = h5py.Empty("f")
    elif isinstance(value, bool):
        group.attrs[name] = np.bool_(value)
    elif isinstance(value, int):
        if _INT64[0] <= value <= _INT64[1]:
            group.attrs[name] = np.int64(value)
        else:  # e.g. the 128-bit state of NumPy's PCG64
            group.create_dataset(name, data=str(value)).attrs[_KIND] = "bigint"
    elif isinstance(value, float):
        group.attrs[name] = np.float64(value)
    elif isinstance(value, str) and "\x00" not in value:
        group.attrs[name] = value
    elif isinstance(value, str):  # HDF5 strings cannot hold NUL: store the UTF-8 bytes
        data = np.frombuffer(value.encode("utf-8"), dtype=np.uint8)
        group.create_dataset(name, data=data).attrs[_KIND] = "str"
    elif isinstance(value, bytes):
        group.create_dataset(name, data=np.frombuffer(value, dtype=np.uint8)).attrs[_KIND] = "bytes"
    else:
        raise TypeError(f"{where}: cannot store an object of type {type(value).__name__} in a checkpoint")


def _packed(values):
    """float64 / int64 array for a non-empty list of only floats or only ints, else None."""
    if not values:
        return None
    if all(type(v) is float for v in values):
        return np.array(values, dtype=np.float64)
    if all(type(v) is int and _INT64[0] <= v <= _INT64[1] for v in values):
        return np.array(values, dtype=np.int64)
    return None


# --------------------------------------------------------------------------- loading
def load_checkpoint(path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`; any problem is a CheckpointError."""
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint path is not a file: {path}")
    if not h5py.is_hdf5(path):
        what = "is empty" if path.stat().st_size == 0 else "is not an HDF5 file"
        raise CheckpointError(f"{path} {what}; expected an NNOTT checkpoint (.h5) written by --save or a run")
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != _FORMAT:
                raise CheckpointError(f"{path} is an HDF5 file but not an NNOTT checkpoint "
                                      "(no 'format' attribute)")
            version = int(f.attrs.get("format_version", -1))
            if version > CHECKPOINT_FORMAT_VERSION:
                raise CheckpointError(f"{path} has checkpoint format {version}, newer than this NNOTT "
                                      f"reads ({CHECKPOINT_FORMAT_VERSION}); upgrade NNOTT")
            sections = {attr: _get_member(f, _GROUP[attr]) for attr in _SECTIONS}
            return Checkpoint(epoch=int(f.attrs["epoch"]), step=int(f.attrs["step"]),
                              config=json.loads(f.attrs["config"]), path=path, **sections)
    except CheckpointError:
        raise
    except Exception as exc:  # truncated or corrupt file: h5py raises OSError, KeyError, ...
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path} is damaged (truncated or corrupt): {msg}") from exc


def _get_member(group: h5py.Group, name: str):
    """The value stored by ``_put(group, name, ...)``."""
    if name in group:
        return _read_object(group[name])
    if name in group.attrs:
        return _read_attr(group.attrs[name])
    raise KeyError(f"member {name!r} missing in {group.name}")


def _read_object(obj):
    kind = obj.attrs.get(_KIND)
    if isinstance(obj, h5py.Dataset):
        if kind == "ndarray":
            return np.asarray(obj[()])
        if kind == "npscalar":
            return obj[()]
        if kind == "bytes":
            return obj[()].tobytes()  # stored as uint8
        if kind == "str":
            return obj[()].tobytes().decode("utf-8")
        if kind == "bigint":
            return int(obj.asstr()[()])
        if kind in ("list", "tuple"):
            items = obj[()].tolist()
            return tuple(items) if kind == "tuple" else items
    elif kind == "dict":
        keys = json.loads(obj.attrs[_KEYS])
        return {k: _get_member(obj, _child_name(k, i)) for i, k in enumerate(keys)}
    elif kind in ("list", "tuple"):
        items = [_get_member(obj, str(i)) for i in range(int(obj.attrs[_LEN]))]
        return tuple(items) if kind == "tuple" else items
    raise ValueError(f"unknown stored kind {kind!r} at {obj.name}")


def _read_attr(value):
    if isinstance(value, h5py.Empty):
        return None
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return value  # str


# --------------------------------------------------------------------------- validation
def check_compatible(ckpt: Checkpoint, *, model_shapes: dict, config: dict | None = None,
                     keys=COMPAT_KEYS) -> None:
    """Raise one CheckpointError listing every way ``ckpt`` does not fit the model.

    ``model_shapes`` is ``Module.state_shapes()``; ``config`` is this run's config, compared
    on ``keys`` present in both configs (tier, architecture, input shape, number of classes).
    """
    problems = []
    if config is not None:
        for key in keys:
            if key in config and key in ckpt.config and config[key] is not None:
                theirs, ours = _normal(ckpt.config[key]), _normal(config[key])
                if theirs != ours:
                    problems.append(f"{key} is {_show(theirs)} in the checkpoint but {_show(ours)} here")
    stored = {name: tuple(np.shape(a)) for name, a in ckpt.model_state.items()}
    missing = [n for n in model_shapes if n not in stored]
    unexpected = [n for n in stored if n not in model_shapes]
    if missing:
        problems.append(f"{len(missing)} missing tensor(s): {_preview(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensor(s): {_preview(unexpected)}")
    mismatched = [f"{n} {stored[n]} vs {tuple(s)}" for n, s in model_shapes.items()
                  if n in stored and stored[n] != tuple(s)]
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatch(es) (checkpoint vs model): {_preview(mismatched)}")
    if problems:
        where = f" {ckpt.path}" if ckpt.path else ""
        raise CheckpointError(f"checkpoint{where} does not fit this model: " + "; ".join(problems))


def check_tier(ckpt: Checkpoint, tier: str, flag: str = "--resume", *, accept=()) -> None:
    """Refuse a checkpoint saved by another tier with a message that says which launcher reads it.

    ``accept`` lists other tiers whose checkpoints this one can read (the scalar tier loads
    the vectorized MLP's weights).
    """
    theirs = ckpt.config.get("tier")
    if theirs is None or theirs == tier or theirs in accept:
        return
    launcher = TIER_LAUNCHERS.get(theirs)
    hint = f"use it with python {launcher} {flag} {ckpt.path}" if launcher else "use it with that tier's launcher"
    raise CheckpointError(f"{ckpt.path} was saved by the {theirs} tier, not the {tier} tier; {hint}")


def _normal(value):
    """Lists and tuples compare equal after a JSON round trip."""
    if isinstance(value, (list, tuple)):
        return tuple(_normal(v) for v in value)
    return value


def _show(value) -> str:
    return "x".join(map(str, value)) if isinstance(value, tuple) else repr(value)


def _preview(items, limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
