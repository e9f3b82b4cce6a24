"""The strict-device backend: NumPy arrays that refuse to mix with host arrays, as CuPy's do.

Tests run a training step under it (:func:`common.backend.use_strict`) so that the GPU path
stays honest without a GPU: any NumPy function or operator that meets a "device" array raises.
"""
from __future__ import annotations

import operator
import types

import numpy as np

def _refuse(what: str):
    raise TypeError(
        f"strict device backend: {what}. A host (NumPy) array met a device array; "
        "move it explicitly with common.backend.to_device() or to_numpy()."
    )


def _unwrap(obj, fname):
    """StrictArray -> ndarray; a bare ndarray is refused (as CuPy refuses it)."""
    if isinstance(obj, StrictArray):
        return obj._a
    if isinstance(obj, np.ndarray):
        _refuse(f"{fname}() got a NumPy array")
    if isinstance(obj, (list, tuple)):
        return type(obj)(_unwrap(o, fname) for o in obj)
    return obj


def _wrap(obj):
    if isinstance(obj, np.ndarray):
        return StrictArray(obj)
    if isinstance(obj, tuple):
        return tuple(_wrap(o) for o in obj)
    if isinstance(obj, list):
        return [_wrap(o) for o in obj]
    if isinstance(obj, np.generic):  # numpy scalar results become 0-d device arrays, as in CuPy
        return StrictArray(np.asarray(obj))
    return obj


def _strict_fn(fn, fname):
    def call(*args, **kwargs):
        args = [_unwrap(a, fname) for a in args]
        kwargs = {k: _unwrap(v, fname) for k, v in kwargs.items()}
        return _wrap(fn(*args, **kwargs))

    call.__name__ = fname
    call.__doc__ = getattr(fn, "__doc__", None)
    return call


class StrictArray:
    """A NumPy array pretending to live on a device.

    Like ``cupy.ndarray``: ``np.asarray(a)`` and any NumPy function or operator that meets a
    host array raise TypeError; ``a.get()`` is the explicit copy back to the host.
    """

    __slots__ = ("_a",)
    __array_priority__ = 1000

    def __init__(self, a):
        self._a = a

    # explicit transfer
    def get(self):
        return self._a.copy()

    # implicit conversion is refused, as in CuPy
    def __array__(self, dtype=None, copy=None):
        _refuse("implicit conversion to a NumPy array is not allowed")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        _refuse(f"NumPy ufunc {ufunc.__name__} was applied to a device array")

    def __array_function__(self, func, types, args, kwargs):
        _refuse(f"NumPy function {func.__name__} was applied to a device array")

    def __float__(self):
        return float(self._a)

    def __int__(self):
        return int(self._a)

    def __bool__(self):
        return bool(self._a)

    def __index__(self):
        return operator.index(self._a)

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (StrictArray(v) if isinstance(v, np.ndarray) else _wrap(v) for v in self._a)

    def __repr__(self):
        return f"StrictArray({self._a!r})"

    def __getitem__(self, key):
        return _wrap(self._a[_unwrap(key, "__getitem__")])

    def __setitem__(self, key, value):
        self._a[_unwrap(key, "__setitem__")] = _unwrap(value, "__setitem__")

    def __getattr__(self, name):
        if name.startswith("__"):  # no __array_interface__, __dlpack__...: no back doors to NumPy
            raise AttributeError(name)
        attr = getattr(self._a, name)
        if callable(attr):
            return _strict_fn(attr, name)
        return _wrap(attr)

    # ndarray attributes that are properties, not methods
    @property
    def T(self):
        return StrictArray(self._a.T)

    @property
    def shape(self):
        return self._a.shape

    @property
    def dtype(self):
        return self._a.dtype

    @property
    def ndim(self):
        return self._a.ndim

    @property
    def size(self):
        return self._a.size

    @property
    def nbytes(self):
        return self._a.nbytes

    @property
    def strides(self):
        return self._a.strides


def _binary(name):
    op = getattr(operator, name)

    def method(self, other):
        return _wrap(op(self._a, _unwrap(other, f"operator {name}")))

    def rmethod(self, other):
        return _wrap(op(_unwrap(other, f"operator {name}"), self._a))

    def imethod(self, other):
        iop = getattr(operator, "i" + name.rstrip("_") if name.endswith("_") else "i" + name)
        self._a = iop(self._a, _unwrap(other, f"operator i{name}"))
        return self

    return method, rmethod, imethod


for _dunder, _name in (("add", "add"), ("sub", "sub"), ("mul", "mul"), ("truediv", "truediv"),
                       ("floordiv", "floordiv"), ("mod", "mod"), ("pow", "pow"), ("matmul", "matmul"),
                       ("and", "and_"), ("or", "or_"), ("xor", "xor")):
    _m, _r, _i = _binary(_name)
    setattr(StrictArray, f"__{_dunder}__", _m)
    setattr(StrictArray, f"__r{_dunder}__", _r)
    setattr(StrictArray, f"__i{_dunder}__", _i)
for _name in ("lt", "le", "eq", "ne", "gt", "ge"):
    setattr(StrictArray, f"__{_name}__", _binary(_name)[0])
for _name in ("neg", "pos", "abs", "invert"):
    setattr(StrictArray, f"__{_name}__", (lambda op: lambda self: _wrap(op(self._a)))(getattr(operator, _name)))
StrictArray.__hash__ = None


class _StrictNamespace(types.SimpleNamespace):
    """A module-like view of NumPy whose functions take and return StrictArrays."""

    def __init__(self, base, path):
        super().__init__()
        object.__setattr__(self, "_base", base)
        object.__setattr__(self, "_path", path)

    def __getattr__(self, name):
        attr = getattr(self._base, name)
        if isinstance(attr, types.ModuleType):
            return _StrictNamespace(attr, f"{self._path}.{name}")
        if isinstance(attr, type) or not callable(attr):
            return attr  # dtypes, constants (pi, newaxis), exception classes
        return _strict_fn(attr, f"{self._path}.{name}")

    # host -> "device" transfers are the only way in
    def asarray(self, obj, dtype=None):
        if isinstance(obj, StrictArray):
            return obj if dtype is None else StrictArray(obj._a.astype(dtype, copy=False))
        return StrictArray(np.array(obj, dtype=dtype))

    def array(self, obj, dtype=None, copy=True):
        if isinstance(obj, StrictArray):
            return StrictArray(np.array(obj._a, dtype=dtype, copy=copy))
        return StrictArray(np.array(obj, dtype=dtype))

    def asnumpy(self, obj):
        return obj.get() if isinstance(obj, StrictArray) else np.asarray(obj)

    def get_array_module(self, *arrays):
        return self

    def __repr__(self):
        return f"<strict device backend {self._path}>"


strict = _StrictNamespace(np, "strict")


