"""Typed reading of a benchmark suite's TOML: the target profiles' field reader plus the
list-shaped fields a suite has (tables of models, batches, shapes)."""
from __future__ import annotations

from typing import Any, Mapping

from ..targets._fields import Reader

KIND = "benchmark suite"
Scalar = str | int | float | bool


class SuiteReader(Reader):
    """A :class:`Reader` whose messages say "benchmark suite 'FILE': field 'F' ..."."""

    def __init__(self, data: Mapping[str, Any], source: str, prefix: str = "",
                 kind: str = KIND):
        super().__init__(data, source, prefix, kind)

    def optional_integer(self, key: str, *, minimum: int) -> int | None:
        if key not in self.data:
            self.seen.add(key)
            return None
        return self.integer(key, 0, minimum=minimum)

    def fraction(self, key: str, default: float) -> float:
        """A number strictly between 0 and 1."""
        value = self._get(key, default)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1
        if not ok:
            self.fail(key, "must be a number strictly between 0 and 1", value)
        return float(value)

    def int_list(self, key: str, *, minimum: int) -> tuple[int, ...]:
        value = self._get(key, [])
        ok = isinstance(value, list) and all(
            isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in value)
        if not ok:
            self.fail(key, f"must be a list of integers >= {minimum}, such as [1, 8]", value)
        return tuple(value)

    def shape_list(self, key: str) -> tuple[tuple[int, ...], ...]:
        value = self._get(key, [])
        ok = isinstance(value, list) and all(
            isinstance(s, list) and s and all(
                isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in s)
            for s in value)
        if not ok:
            self.fail(key, "must be a list of per-sample shapes without the batch, such as "
                      "[[3, 32, 32]]", value)
        return tuple(tuple(s) for s in value)

    def scalar_table(self, key: str) -> dict[str, Scalar]:
        value = self._get(key, {})
        if not isinstance(value, Mapping):
            self.fail(key, "must be a table such as { num_classes = 10 }", value)
        for k, v in value.items():
            if not isinstance(v, (str, int, float, bool)):
                self.fail(f"{key}.{k}", "must be a string, number or boolean", v)
        return dict(value)

    def table_list(self, key: str) -> list["SuiteReader"]:
        value = self._get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
            self.fail(key, "must be an array of tables ([[models]] sections)", value)
        return [SuiteReader(v, self.source, f"{self.prefix}{key}[{i}].")
                for i, v in enumerate(value)]
