"""Boundary checks shared by every public entry point.

Each check raises ValueError naming the argument, what was expected, what came,
and how to fix it (style.md: "Errors and docs").
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np


def positive_int(value, name: str) -> int:
    """Return ``value`` as an int if it is an integer >= 1, else raise ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def positive_float(value, name: str) -> float:
    """Return ``value`` as a float if it is finite and > 0, else raise ValueError."""
    v = finite_float(value, name)
    if not v > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return v


def nonnegative_float(value, name: str) -> float:
    """Return ``value`` as a float if it is finite and >= 0, else raise ValueError."""
    v = finite_float(value, name)
    if v < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return v


def nonnegative_int(value, name: str) -> int:
    """Return ``value`` as an int if it is an integer >= 0, else raise ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return int(value)


def finite_float(value, name: str) -> float:
    """Return ``value`` as a float if it is a finite number, else raise ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return v


def positive_ints(values, name: str) -> tuple[int, ...]:
    """A non-empty sequence of positive integers, returned as a tuple."""
    if isinstance(values, (int, np.integer)) and not isinstance(values, bool):
        values = (values,)
    if not isinstance(values, Iterable) or isinstance(values, str):
        raise ValueError(f"{name} must be a sequence of positive integers, got {values!r}")
    out = tuple(positive_int(v, f"{name}[{i}]") for i, v in enumerate(values))
    if not out:
        raise ValueError(f"{name} must not be empty")
    return out


def inputs(x, name: str, *, in_dim: int | None = None) -> np.ndarray | object:
    """Check a 2-D input array of finite values; returns it unchanged.

    Args:
      x: array-like of shape (N, d).
      name: argument name used in the message.
      in_dim: expected feature dimension d, if known.
    """
    shape = getattr(x, "shape", None)
    if shape is None:
        x = np.asarray(x)
        shape = x.shape
    if len(shape) != 2:
        raise ValueError(
            f"{name} must be a 2-D array of shape (N, d), got shape {tuple(shape)}; "
            "reshape a single point to (1, d)"
        )
    if shape[0] < 1 or shape[1] < 1:
        raise ValueError(f"{name} must have at least one row and one column, got {tuple(shape)}")
    if in_dim is not None and shape[1] != in_dim:
        raise ValueError(f"{name} has feature dimension {shape[1]}, expected {in_dim}")
    if not _all_finite(x):
        raise ValueError(f"{name} contains non-finite values (nan or inf); clean the inputs")
    return x


def _all_finite(x) -> bool:
    # Concrete arrays only: under jit (tracers) the check is skipped.
    try:
        return bool(np.all(np.isfinite(np.asarray(x))))
    except Exception:  # noqa: BLE001 - a jax tracer cannot be converted; nothing to check
        return True


def same_features(x1, x2, names=("x1", "x2")) -> None:
    """Raise unless x1 and x2 have the same number of columns."""
    if x1.shape[1] != x2.shape[1]:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same feature dimension, "
            f"got {x1.shape[1]} and {x2.shape[1]}"
        )


def choice(value, name: str, allowed: Iterable[str]) -> str:
    """Raise unless ``value`` is one of ``allowed``."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value


def did_you_mean(value, options: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` naming the option of ``options`` closest to ``value``
    (difflib's ratio >= 0.6), or ``""`` when none is close: the hint of every error
    about an unknown key or name."""
    import difflib

    close = difflib.get_close_matches(str(value), [str(o) for o in options], n=1)
    return f"; did you mean {close[0]!r}?" if close else ""
