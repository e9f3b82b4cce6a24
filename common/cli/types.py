"""Argument types: turn a flag's text into a checked value, or a one-line argparse error.

``positive_int``, ``probability``, ``float_range(lo, hi)``, comma lists (``int_list``,
``name_list(choices)``), ``shape3`` ('3,32,32'). Each raises ``argparse.ArgumentTypeError``
with a message that says what is wrong, which argparse turns into ``prog: error: ...`` and exit 2.
"""
from __future__ import annotations

import argparse

from common.errors import UsageError

_SCHEDULE_ALIASES = {"reduce_on_plateau": "plateau", "reduce-on-plateau": "plateau"}
MAX_SEED = 2**32 - 1


def _number(text: str, cast, what: str):
    try:
        return cast(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None


def _ranged(cast, what, lo=None, hi=None, lo_open=False, hi_open=False, name=None):
    """A type function: ``cast`` the text and check lo <= value <= hi (strict where open)."""
    left = "(" if lo_open else "["
    right = ")" if hi_open else "]"

    def check(text):
        value = _number(text, cast, what)
        if value != value:  # NaN
            raise argparse.ArgumentTypeError(f"{text!r} is not a number")
        if value in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"{text!r} must be a finite number")
        bad_lo = lo is not None and (value <= lo if lo_open else value < lo)
        bad_hi = hi is not None and (value >= hi if hi_open else value > hi)
        if bad_lo or bad_hi:
            if hi is None:
                rule = f"> {lo}" if lo_open else f">= {lo}"
            else:
                rule = f"in {left}{lo}, {hi}{right}"
            raise argparse.ArgumentTypeError(f"{text} must be {rule}")
        return value

    check.__name__ = name or what
    return check


positive_int = _ranged(int, "an integer", lo=1, name="positive_int")
nonneg_int = _ranged(int, "an integer", lo=0, name="nonneg_int")
positive_float = _ranged(float, "a number", lo=0.0, lo_open=True, name="positive_float")
nonneg_float = _ranged(float, "a number", lo=0.0, name="nonneg_float")
probability = _ranged(float, "a number", lo=0.0, hi=1.0, name="probability")
seed_value = _ranged(int, "an integer", lo=0, hi=MAX_SEED, name="seed")


def float_range(lo: float, hi: float, *, hi_open: bool = False, lo_open: bool = False):
    """Type function for a float in [lo, hi] (open ends where asked)."""
    return _ranged(float, "a number", lo, hi, lo_open, hi_open, name="float_range")


def _items(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",")]
    if not text.strip() or any(not t for t in items):
        raise argparse.ArgumentTypeError(f"{text!r} has an empty item; use a comma list like 512,256,128")
    return items


def int_list(text: str) -> list[int]:
    """'512,256,128' -> [512, 256, 128]."""
    out = []
    for item in _items(text):
        try:
            out.append(int(item))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text}: {item!r} is not an integer") from None
    return out


def positive_int_list(text: str) -> list[int]:
    """Like :func:`int_list`, every value >= 1 (layer widths, milestones)."""
    values = int_list(text)
    for v in values:
        if v < 1:
            raise argparse.ArgumentTypeError(f"{text}: {v} must be >= 1")
    return values


def hidden_size_list(text: str) -> list[int]:
    """Hidden-layer widths: '256,128' -> [256, 128]; '' or 'none' -> [] (no hidden layer: the
    network is one Linear layer and softmax, i.e. softmax regression)."""
    if text.strip().lower() in ("", "none", "linear"):
        return []
    return positive_int_list(text)


def increasing_int_list(text: str) -> list[int]:
    """Positive, strictly increasing integers ('5,10,15'), e.g. LR milestones."""
    values = positive_int_list(text)
    if any(b <= a for a, b in zip(values, values[1:])):
        raise argparse.ArgumentTypeError(f"{text}: values must be strictly increasing")
    return values


def float_list_or_none(text: str) -> list[float]:
    """Dropout rates: '0.2' or '0.3,0.2,0.1'; 'none' or 'off' mean 0. Each in [0, 1)."""
    out = []
    for item in _items(text):
        if item.lower() in ("none", "off"):
            out.append(0.0)
            continue
        try:
            value = float(item)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text}: {item!r} is not a number (or 'none')") from None
        if not 0.0 <= value < 1.0:
            raise argparse.ArgumentTypeError(f"{text}: {item} must be in [0, 1)")
        out.append(value)
    return out


def name_list(choices):
    """Type function for a comma list of names from ``choices`` ('relu,gelu'); '-' reads as '_'."""
    choices = tuple(choices)

    def parse(text: str) -> list[str]:
        out = []
        for item in _items(text):
            name = item.lower()
            if name not in choices and name.replace("-", "_") in choices:
                name = name.replace("-", "_")
            if name not in choices:
                raise argparse.ArgumentTypeError(f"{item!r} is not one of {', '.join(choices)}")
            out.append(name)
        return out

    parse.__name__ = "name_list"
    return parse


def shape3(text: str) -> tuple[int, int, int]:
    """'3,32,32' -> (3, 32, 32): channels, height, width."""
    values = positive_int_list(text)
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"{text}: expected 3 values C,H,W like 3,32,32")
    return tuple(values)


def _schedule_name(text: str) -> str:
    name = text.strip().lower()
    return _SCHEDULE_ALIASES.get(name, name)


def broadcast_list(values, n: int, flag: str, what: str = "hidden layers") -> list:
    """One value -> repeated n times; n values -> kept; anything else is a UsageError (exit 2)."""
    values = list(values)
    if len(values) == 1:
        return values * n
    if len(values) == n:
        return values
    raise UsageError(f"{flag} has {len(values)} values but there are {n} {what}; give 1 value or {n}")


