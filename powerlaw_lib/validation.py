"""Argument checks shared by the whole library: one clear `ValueError` naming the argument.

Bottom layer: imports nothing from `powerlaw_lib`. Every module validates its arguments with
these helpers, so the same mistake gets the same message everywhere.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch


def check_field(cond: bool, name: str, allowed: str, value: object,
                owner: str = "RunConfig") -> None:
    """Raise ``ValueError("<owner>.<name>=<value> is invalid: allowed <allowed>")`` unless cond."""
    if not cond:
        raise ValueError(f"{owner}.{name}={value!r} is invalid: allowed {allowed}")


def is_int(value: object) -> bool:
    """An integer (Python or NumPy), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(name: str, value: object, low: int = 1, high: int | None = None) -> int:
    """`value` as an int in [low, high] (no upper bound when `high` is None)."""
    if not is_int(value) or value < low or (high is not None and value > high):  # type: ignore[operator]
        allowed = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be an integer {allowed}, got {value!r}")
    return int(value)  # type: ignore[arg-type]


def _finite_float(name: str, value: object, allowed: str) -> float:
    try:
        number = float(value) if not isinstance(value, (bool, str)) else math.nan  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number {allowed}, got {value!r}")
    return number


def check_positive(name: str, value: object) -> float:
    """`value` as a finite float > 0."""
    number = _finite_float(name, value, "> 0")
    if number <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return number


def check_nonnegative(name: str, value: object) -> float:
    """`value` as a finite float >= 0."""
    number = _finite_float(name, value, ">= 0")
    if number < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return number


def as_tensor(value: object, name: str = "value") -> torch.Tensor:
    """A tensor as it is, or a NumPy array (or nested sequence) as a tensor sharing its data."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    try:
        return torch.as_tensor(np.asarray(value))
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{name} must be a tensor or an array, got {type(value).__name__}") from exc
