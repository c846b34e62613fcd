"""Checks of request values, run before any work: one-line UserErrors naming the option and the fix.

Requests (``advtf.jobs``) call these in ``__post_init__``; each names the CLI option (``--eps``) so
the message is the fix. Every number is finite and in its range; seeds fit NumPy's and
TensorFlow's 32-bit seeds.
"""

from __future__ import annotations

import math
from typing import Iterable

from advtf.errors import UserError

SEED_LIMIT = 2 ** 32


def _number(option: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"{option} must be a number (got {value!r})")
    if not math.isfinite(value):
        raise UserError(f"{option} must be a finite number (got {value}); give e.g. {option} 0.5")
    return float(value)


def finite(option: str, value) -> float:
    """Any finite number."""
    return _number(option, value)


def positive(option: str, value) -> float:
    """A finite number > 0."""
    if _number(option, value) <= 0:
        raise UserError(f"{option} must be > 0 (got {value:g})")
    return value


def non_negative(option: str, value) -> float:
    """A finite number >= 0."""
    if _number(option, value) < 0:
        raise UserError(f"{option} must be >= 0 (got {value:g})")
    return value


def in_range(option: str, value, low: float, high: float, *, low_open: bool = False, high_open: bool = False):
    """A finite number in [low, high] (open ends as asked)."""
    v = _number(option, value)
    if (v < low or (low_open and v == low)) or (v > high or (high_open and v == high)):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise UserError(f"{option} must be in {interval} (got {v:g})")
    return value


def fraction(option: str, value):
    """A number strictly between 0 and 1 (quantiles, fractions)."""
    return in_range(option, value, 0.0, 1.0, low_open=True, high_open=True)


def count(option: str, value, *, minimum: int = 1):
    """An integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"{option} must be a whole number (got {value!r})")
    if value < minimum:
        raise UserError(f"{option} must be >= {minimum} (got {value})")
    return value


def optional_count(option: str, value, *, minimum: int = 1):
    """None or an integer >= ``minimum``."""
    return None if value is None else count(option, value, minimum=minimum)


def seed(value, option: str = "--seed"):
    """An integer in [0, 2**32)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < SEED_LIMIT:
        raise UserError(f"{option} must be a whole number in [0, 2^32) (got {value!r})")
    return value


def choice(option: str, value, choices: Iterable[str]):
    """One of ``choices``."""
    choices = list(choices)
    if value not in choices:
        raise UserError(f"{option} must be one of {', '.join(map(str, choices))} (got {value!r})")
    return value


def validation_split(value, split_size: int | None = None, option: str = "--validation"):
    """A fraction in [0, 1) or a whole count smaller than the split."""
    v = _number(option, value)
    if v < 0:
        raise UserError(f"{option} must be >= 0 (got {v:g})")
    if v >= 1:
        if v != int(v):
            raise UserError(f"{option} is a fraction below 1 or a whole number of images (got {v:g})")
        if split_size is not None and v >= split_size:
            raise UserError(f"{option} {int(v)} leaves no training images (the split has {split_size}); "
                            "give a smaller count or a fraction such as 0.1")
    return value
