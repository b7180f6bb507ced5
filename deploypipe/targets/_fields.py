"""Typed reading of one TOML table, with errors that name the file, the field and what is
allowed, in one sentence."""
from __future__ import annotations

from typing import Any, Iterable, Mapping, NoReturn

from ..errors import InputError
from ..utils.checks import LARGEST_INT

_MISSING = object()


class Reader:
    """Reads fields of ``data`` (a parsed TOML table) and remembers which ones it read.
    ``kind`` names the kind of file in messages ("target profile", "benchmark suite")."""

    def __init__(self, data: Mapping[str, Any], source: str, prefix: str = "",
                 kind: str = "target profile"):
        if not isinstance(data, Mapping):
            raise InputError(f"{kind} '{source}': {prefix.rstrip('.') or 'the file'} "
                             f"must be a table, got {_describe(data)}")
        self.data, self.source, self.prefix, self.kind = data, source, prefix, kind
        self.seen: set[str] = set()

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def fail(self, key: str, what: str, value: Any = _MISSING) -> NoReturn:
        got = "" if value is _MISSING else f", got {_describe(value)}"
        raise InputError(f"{self.kind} '{self.source}': field '{self.prefix}{key}' {what}{got}")

    def _get(self, key: str, default: Any) -> Any:
        self.seen.add(key)
        return self.data.get(key, default)

    def string(self, key: str, default: str) -> str:
        value = self._get(key, default)
        if not isinstance(value, str):
            self.fail(key, "must be a string", value)
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            self.fail(key, "must be true or false", value)
        return value

    def integer(self, key: str, default: int, *, minimum: int) -> int:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= LARGEST_INT:
            self.fail(key, f"must be an integer >= {minimum} and at most {LARGEST_INT}", value)
        return value

    def number(self, key: str, default: float, *, minimum: float) -> float:
        value = self._get(key, default)
        # NaN fails `>=`; inf would pass any comparison it is used in (atol = inf passes anything)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not minimum <= value < float("inf"):
            self.fail(key, f"must be a finite number >= {minimum:g}", value)
        return float(value)

    def choice(self, key: str, allowed: tuple[str, ...], default: str | None) -> Any:
        value = self._get(key, default)
        if value is default and key not in self.data:
            return value
        if value not in allowed:
            self.fail(key, f"must be one of {', '.join(repr(a) for a in allowed)}", value)
        return value

    def string_list(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self._get(key, list(default))
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(key, "must be a list of strings", value)
        return tuple(value)

    def shape(self, key: str) -> tuple[int, ...] | None:
        value = self._get(key, None)
        if value is None:
            return None
        ok = isinstance(value, list) and value and all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
        if not ok:
            self.fail(key, "must be a list of positive integers without the batch, "
                      "such as [3, 224, 224]", value)
        return tuple(value)

    def table(self, key: str) -> "Reader":
        self.seen.add(key)
        return type(self)(self.data.get(key, {}), self.source, f"{self.prefix}{key}.", self.kind)

    def reject_unknown(self, allowed: Iterable[str]) -> None:
        allowed = set(allowed)
        unknown = sorted(set(self.data) - allowed - self.seen)
        if unknown:
            import difflib

            close = difflib.get_close_matches(unknown[0], sorted(allowed), n=1)
            fix = f"did you mean '{self.prefix}{close[0]}'? " if close else ""
            self.fail(unknown[0], f"is not a known field; {fix}allowed: {', '.join(sorted(allowed))}")


def _describe(value: Any) -> str:
    kind = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a table"}.get(type(value), type(value).__name__)
    text = repr(value)
    return f"{text[:40] + '...' if len(text) > 40 else text} ({kind})"
