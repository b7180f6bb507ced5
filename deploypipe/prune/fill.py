"""Meeting a cost budget closely when widths come in blocks: after an allocation rounded to
the hardware's multiple, give channels back, one block at a time, while the cost stays within
the budget.

Rounding each group to a multiple of ``round_to`` moves the cost in steps; the allocation then
settles on the first rounded answer under the budget, which can remove 10-20% more MACs than
asked (a 16-wide group at 4x fewer MACs keeps 8, not 4, so the bisection cuts the wide groups
deeper). The fill hands the difference back where the allocation would have kept it: to the
group furthest below the uniform share (uniform allocation) or to the most important block
left out (global ranking), so the budget is met within one block of the cheapest group.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .allocate import block


def fill(widths: Sequence[int], keep: Sequence[int], prunable: Sequence[bool], *,
         cost: Callable[[np.ndarray], float], target: float, round_to: int = 1,
         value: Callable[[int, int, int], float], dense: Sequence[int] | None = None) -> np.ndarray:
    """``keep`` with blocks added back while ``cost(keep) <= target``. ``value(g, now, to)``
    ranks the candidate of group ``g`` (widening from ``now`` to ``to``): highest first. A
    group's width never exceeds ``widths`` (its width now); frozen groups do not move.
    ``dense`` (default ``widths``): the dense widths, which say which groups are narrower
    than a block and widen a channel at a time."""
    widths = np.asarray(widths, dtype=np.int64)
    dense = widths if dense is None else np.asarray(dense, dtype=np.int64)
    keep = np.array(keep, dtype=np.int64)
    blocked: set[int] = set()
    while True:
        options = [(value(g, int(keep[g]), _next(int(keep[g]), int(widths[g]), round_to, int(dense[g]))), g)
                   for g in range(len(keep)) if prunable[g] and keep[g] < widths[g] and g not in blocked]
        if not options:
            return keep
        for _, g in sorted(options, key=lambda o: (-o[0], o[1])):
            trial = keep.copy()
            trial[g] = _next(int(keep[g]), int(widths[g]), round_to, int(dense[g]))
            if cost(trial) <= target:
                keep = trial
                break
            blocked.add(g)  # costs only grow with width: this group cannot widen any more
        else:
            return keep


def _next(now: int, width: int, round_to: int, dense: int) -> int:
    """One block wider: the next multiple of ``round_to`` (the full width if that is nearer);
    one channel in a group whose dense width is no more than one block (the allocation's step
    there)."""
    step = block(dense, round_to)
    return min(width, (now // step + 1) * step)


def uniform_value(widths: Sequence[int]) -> Callable[[int, int, int], float]:
    """Uniform allocation: the group keeping the smallest share of its channels widens first."""
    widths = np.asarray(widths, dtype=np.float64)
    return lambda g, now, to: -now / widths[g]


def score_value(scores: Sequence[np.ndarray], unit: np.ndarray | None = None, *,
                normalize: bool = True) -> Callable[[int, int, int], float]:
    """Global ranking: the block whose channels carry the most importance (scores normalised
    by their group's mean unless ``normalize`` is false, as the ranking compares them) widens
    first, per channel added; with ``unit`` (each group's cost per channel at the allocation's
    widths), per unit of cost."""
    ranked = [np.sort(np.asarray(s, dtype=np.float64))[::-1] / ((np.mean(s) + 1e-12) if normalize else 1.0)
              for s in scores]
    per = np.ones(len(ranked)) if unit is None else np.maximum(np.asarray(unit, dtype=np.float64), 1e-12)
    return lambda g, now, to: float(np.mean(ranked[g][now:to]) / per[g]) if to > now else -np.inf
