"""Nested channel subsets: a chain of pruning levels that share one set of weights, each
keeping a subset of the channels the level above keeps (teacher ⊇ assistants ⊇ student).

A level is a dict {group id: boolean kept mask} over the dense channels of every prunable
group. Its cost targets lie on a geometric path from the dense model to the budget: level
``t`` in (0, 1] keeps ``dense * (target / dense) ** t`` MACs (or parameters; for a ratio
budget, ``(1 - ratio) ** t`` of the channels), so t = 1/2 is the geometric mean of the
teacher and the student.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import InputError
from .budget import Budget

Level = dict[int, np.ndarray]


def level_fractions(assistants: int, levels: str = "") -> list[float]:
    """t of each assistant, then 1.0 for the student: ``levels`` ("0.3,0.6") if given, else
    ``assistants`` evenly spaced on the geometric path (one: the geometric mean)."""
    if levels.strip():
        try:
            ts = sorted(float(v) for v in levels.split(",") if v.strip())
        except ValueError:
            raise InputError(f"cannot read assistant levels {levels!r}", hint="write fractions, e.g. 0.33,0.67") from None
        if any(not 0.0 < t < 1.0 for t in ts):
            raise InputError(f"assistant levels {levels!r} must lie strictly between 0 (teacher) and 1 (student)",
                             hint="e.g. levels=0.5 for the geometric mean")
        return ts + [1.0]
    if assistants < 0:
        raise InputError(f"the number of assistants must not be negative, got {assistants}", hint="use 0, 1 or 2")
    return [i / (assistants + 1) for i in range(1, assistants + 2)]


def level_budget(budget: Budget, dense_value: float, t: float) -> Budget:
    """The budget of a level ``t`` of the way (geometrically) from dense to ``budget``
    (refused for a latency budget: its levels cannot be placed without measuring)."""
    return budget.toward(dense_value, t)


def full_level(widths: dict[int, int]) -> Level:
    return {gid: np.ones(w, dtype=bool) for gid, w in widths.items()}


def nested_select(parent: Level, current: Level, saliency: dict[int, np.ndarray], widths: dict[int, int]) -> Level:
    """Per group, ``widths[g]`` channels (at most as many as ``parent`` keeps), a subset of
    ``parent``: the most salient of those both ``parent`` and ``current`` keep, topped up,
    where the parent has just dropped channels this level relied on, with the parent's
    most salient others (revived: their weights kept training in the levels above)."""
    out = {}
    for gid, mask in current.items():
        n = min(int(widths[gid]), int(parent[gid].sum()))
        order = np.lexsort((-saliency[gid], ~(mask & parent[gid]), ~parent[gid]))  # both, parent only, none
        chosen = np.zeros_like(mask)
        chosen[order[:n]] = True
        out[gid] = chosen
    return out


def is_nested(levels: Sequence[Level]) -> bool:
    """Whether every level keeps a subset of the level before it."""
    return all(np.all(low[g] <= high[g]) for high, low in zip(levels, levels[1:]) for g in low)
