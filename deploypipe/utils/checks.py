"""Numbers given from Python held to the command line's limits, refused in one sentence."""
from __future__ import annotations

from typing import Any

from ..errors import InputError

LARGEST_INT = 2**31 - 1  # a count, size or index past this overflows the libraries below (ORT, torch)
LARGEST_FLOAT = 3.4e38  # float32's range: a learning rate or tolerance past it overflows in torch


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def at_least(name: str, value: Any, low: float, *, strictly: bool = False) -> None:
    """Refuse ``value`` of option ``name`` in one sentence unless it is a number >= ``low`` (> with
    ``strictly``): the command line's argument types, for values given from Python."""
    ok = _number(value) and (value > low if strictly else value >= low)
    if not ok:
        raise InputError(f"{name} {value!r} must be a number {'above' if strictly else 'at least'} {low:g}",
                         hint=f"it takes what --{name.replace('_', '-')} takes on the command line "
                              "(deploypipe build --help)")


def fraction(name: str, value: Any, *, hint: str) -> None:
    """Refuse ``value`` of option ``name`` unless it is strictly between 0 and 1."""
    if not (_number(value) and 0.0 < value < 1.0):
        raise InputError(f"{name} {value!r} must be strictly between 0 and 1", hint=hint)
