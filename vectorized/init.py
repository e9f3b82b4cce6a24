"""Weight initialisation schemes, by name, on the host.

Every scheme draws a host NumPy array from a ``numpy.random.Generator`` (``common.seed.host_rng()``
by default), so the CPU and the GPU start from the same weights; ``parameter()`` moves it.

| scheme | distribution | keeps the variance of |
|---|---|---|
| ``kaiming`` / ``he`` (``_normal``, ``_uniform``) | std = gain / sqrt(fan_in), gain = sqrt(2) | ReLU activations, forward |
| ``xavier`` / ``glorot`` (``_normal``, ``_uniform``) | std = gain * sqrt(2 / (fan_in + fan_out)) | tanh / sigmoid, forward and backward |
| ``lecun`` (``_normal``, ``_uniform``) | std = 1 / sqrt(fan_in) | linear / SELU units |
| ``normal`` | std = 0.01 | nothing: the classic "small random numbers" |
| ``uniform`` | U(-1/sqrt(fan_in), 1/sqrt(fan_in)) | PyTorch's default for ``nn.Linear`` |
| ``zeros`` / ``constant`` | every weight equal | nothing: all neurons stay identical (a lesson, not a choice) |

A bare name (``kaiming``, ``xavier``, ``lecun``) means the normal variant. A uniform
U(-a, a) has std a / sqrt(3), so each uniform variant uses a = sqrt(3) * std.
"""
from __future__ import annotations

import math

import numpy as np

from common.errors import UserError

_ALIASES = {
    "kaiming": "kaiming_normal", "he": "kaiming_normal", "he_normal": "kaiming_normal",
    "he_uniform": "kaiming_uniform",
    "xavier": "xavier_normal", "glorot": "xavier_normal", "glorot_normal": "xavier_normal",
    "glorot_uniform": "xavier_uniform",
    "lecun": "lecun_normal", "zero": "zeros",
}
_SCHEMES = ("kaiming_normal", "kaiming_uniform", "xavier_normal", "xavier_uniform", "lecun_normal",
            "lecun_uniform", "normal", "uniform", "zeros", "constant")
#: Every name :func:`init_weight` accepts.
INIT_NAMES = tuple(sorted(set(_SCHEMES) | set(_ALIASES)))


def canonical_scheme(scheme: str) -> str:
    """'he' -> 'kaiming_normal', ...; an unknown name raises UserError listing the valid ones."""
    name = str(scheme).lower().replace("-", "_")
    name = _ALIASES.get(name, name)
    if name not in _SCHEMES:
        raise UserError(f"unknown init scheme {scheme!r}; choose one of: {', '.join(INIT_NAMES)}")
    return name


def default_gain(scheme: str, negative_slope: float = 0.0) -> float:
    """sqrt(2 / (1 + a^2)) for Kaiming (a = leaky slope, 0 for ReLU), 1 for the others."""
    if canonical_scheme(scheme).startswith("kaiming"):
        return math.sqrt(2.0 / (1.0 + negative_slope ** 2))
    return 1.0


def init_weight(shape, scheme: str, fan_in: int, fan_out: int, rng: np.random.Generator | None = None,
                gain: float | None = None, value: float = 0.0) -> np.ndarray:
    """A host float64 array of ``shape`` drawn from ``scheme``.

    ``gain`` overrides the scheme's default gain (Kaiming, Xavier, LeCun); ``value`` is the
    fill of ``constant``.
    """
    name = canonical_scheme(scheme)
    if rng is None:
        from common.seed import host_rng

        rng = host_rng()
    if gain is None:
        gain = default_gain(name)
    if name in ("zeros", "constant"):
        return np.full(shape, value if name == "constant" else 0.0)
    if name == "normal":
        return rng.normal(0.0, 0.01, size=shape)
    if name == "uniform":
        bound = 1.0 / math.sqrt(fan_in)
        return rng.uniform(-bound, bound, size=shape)
    family, dist = name.rsplit("_", 1)
    if family == "kaiming":
        std = gain / math.sqrt(fan_in)
    elif family == "xavier":
        std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    else:  # lecun
        std = gain / math.sqrt(fan_in)
    if dist == "normal":
        return rng.normal(0.0, std, size=shape)
    bound = math.sqrt(3.0) * std
    return rng.uniform(-bound, bound, size=shape)
