"""The checks of user values, written once: each raises ``ValueError`` naming the value, what it
must be, and what was given (for a name: the valid names).

Imports nothing from taynode, so every module may use it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from numbers import Integral, Real

__all__ = ["choice", "integer", "integers", "non_negative_float", "positive_float"]


def _is_int(v: object) -> bool:
    return isinstance(v, Integral) and not isinstance(v, bool)


def _bounds(lo: int | None, hi: int | None, below: int | None) -> str:
    if lo is not None and hi is not None:
        return f" in [{lo}, {hi}]"
    if lo is not None and below is not None:
        return f" in [{lo}, {below})"
    if lo is not None:
        return f" >= {lo}"
    if hi is not None:
        return f" <= {hi}"
    return f" < {below}" if below is not None else ""


def _in(v: object, lo: int | None, hi: int | None, below: int | None) -> bool:
    return (
        _is_int(v)
        and (lo is None or v >= lo)  # type: ignore[operator]
        and (hi is None or v <= hi)  # type: ignore[operator]
        and (below is None or v < below)  # type: ignore[operator]
    )


def integer(
    name: str, value: object, lo: int | None = None, hi: int | None = None, *, below: int | None = None, hint: str = ""
) -> int:
    """``value`` as an ``int`` if it is an integer (not a bool) with ``lo <= value <= hi`` and
    ``value < below`` (each bound optional); else ValueError.

    ``hint`` is appended to the message (e.g. why the bound exists or what to pass instead).
    """
    if not _in(value, lo, hi, below):
        raise ValueError(f"{name} must be an integer{_bounds(lo, hi, below)}{hint}, got {value!r}")
    return int(value)  # type: ignore[arg-type]


def integers(name: str, values: Iterable[object], lo: int | None = None, hi: int | None = None, *, hint: str = "") -> tuple:
    """A non-empty sequence of integers in ``[lo, hi]``, as a tuple of ``int``; else ValueError."""
    try:
        vals = tuple(values)
    except TypeError:
        vals = ()
    if not vals or not all(_in(v, lo, hi, None) for v in vals):
        raise ValueError(f"{name} must be integers{_bounds(lo, hi, None)}{hint}, got {values!r}")
    return tuple(int(v) for v in vals)  # type: ignore[arg-type]


def _real(name: str, value: object, need: str) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be {need}, got {value!r}")
    if not isinstance(value, Real):
        try:  # 0-d arrays and NumPy scalars
            value = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be {need}, got {value!r}") from None
    return float(value)


def positive_float(name: str, value: object, *, hint: str = "") -> float:
    """``value`` as a ``float`` if it is a finite number > 0; else ValueError (NaN and inf included)."""
    v = _real(name, value, "a finite number > 0")
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a finite number > 0{hint}, got {value!r}")
    return v


def non_negative_float(name: str, value: object, *, hint: str = "") -> float:
    """``value`` as a ``float`` if it is a finite number >= 0; else ValueError."""
    v = _real(name, value, "a finite number >= 0")
    if not (math.isfinite(v) and v >= 0):
        raise ValueError(f"{name} must be a finite number >= 0{hint}, got {value!r}")
    return v


def choice(name: str, value: object, valid: Iterable[str], *, what: str = "") -> str:
    """``value`` if it is one of ``valid``; else ValueError listing the valid names.

    ``what`` names the kind of value in the message (default: ``name``), e.g. ``"adjoint"``.
    """
    valid = tuple(valid)
    if not isinstance(value, str) or value not in valid:
        raise ValueError(f"unknown {what or name} {value!r}; valid: {', '.join(valid)}")
    return value
