"""Numbers that options accept: finite, of the right kind, and within a documented range.

One validator for every policy and plugin, so NaN (which compares false with everything and
so slips past `value <= 0`) and infinities are refused the same way everywhere, and every
wait, timeout, limit and concurrency has an upper bound that says why it is there.

    >>> check_number("timeout_seconds", 5, above=0, at_most=30)
    5
    >>> check_number("timeout_seconds", float("nan"), above=0, at_most=30)
    Traceback (most recent call last):
    ...
    ValueError: timeout_seconds must be a finite number above 0 and at most 30, got nan
"""

from __future__ import annotations

import math
from typing import Any

import attrs

__all__ = ["bounded", "check_number"]


def _range(
    above: float | None, at_least: float | None, at_most: float | None, integer: bool
) -> str:
    kind = "a whole number" if integer else "a finite number"
    parts = []
    if above is not None:
        parts.append(f"above {_shown(above)}")
    if at_least is not None:
        parts.append(
            f"from {_shown(at_least)}" if at_most is not None else f"of {_shown(at_least)} or more"
        )
    if at_most is not None:
        parts.append(
            f"to {_shown(at_most)}" if at_least is not None else f"at most {_shown(at_most)}"
        )
    joiner = " and " if above is not None and at_most is not None else " "
    return kind + (" " + joiner.join(parts) if parts else "")


def _shown(bound: float) -> str:
    # A limit as the documentation writes it: 67108864, not `:g`'s 6.71089e+07.
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


def check_number(
    name: str,
    value: Any,
    *,
    above: float | None = None,
    at_least: float | None = None,
    at_most: float | None = None,
    integer: bool = False,
) -> Any:
    """Return `value` if it is a finite int or float (an int when `integer`) in the range,
    else raise `ValueError` starting with `name` (config errors attach it to its place)."""
    ok = not isinstance(value, bool) and isinstance(value, int if integer else int | float)
    if ok and isinstance(value, float):
        ok = math.isfinite(value)
    if ok:
        ok = (
            (above is None or value > above)
            and (at_least is None or value >= at_least)
            and (at_most is None or value <= at_most)
        )
    if not ok:
        raise ValueError(
            f"{name} must be {_range(above, at_least, at_most, integer)}, got {value!r}"
        )
    return value


def bounded(
    *,
    above: float | None = None,
    at_least: float | None = None,
    at_most: float | None = None,
    integer: bool = False,
    optional: bool = False,
) -> Any:
    """An attrs validator calling `check_number` with the field's name (None passes when
    `optional`)."""

    def validate(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if optional and value is None:
            return
        check_number(
            attribute.alias or attribute.name,
            value,
            above=above,
            at_least=at_least,
            at_most=at_most,
            integer=integer,
        )

    return validate
