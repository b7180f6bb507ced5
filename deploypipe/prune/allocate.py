"""Turn scores and a budget into the channels each group keeps.

All allocators are pure functions of per-group widths, per-channel scores and (for cost
budgets) a cost model; they return the number of channels each group keeps, which
``select_drop`` turns into the channel indices to remove (lowest scores first).
Every allocator keeps at least one channel (one ``round_to`` block) per group; those that
allocate to a cost stop at the :func:`floors` of ``--max-ratio``.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from ..errors import BudgetError, InputError


def block(dense: int, round_to: int) -> int:
    """The channels a group's width moves by under ``round_to``: the multiple, or one for a
    group whose dense width is no more than one block (it is left unrounded)."""
    return 1 if round_to <= 1 or dense <= round_to else round_to


def round_keep(keep: int, width: int, round_to: int, dense: int | None = None) -> int:
    """Round a kept width to the hardware's preferred multiple, within [min(width, N), width];
    a group whose dense width (default ``width``) is no more than one block is left unrounded."""
    if block(width if dense is None else dense, round_to) == 1:
        return max(1, min(keep, width))
    rounded = int(round(keep / round_to)) * round_to
    return max(round_to, min(rounded, width))


def floors(widths: Sequence[int], prunable: Sequence[bool], max_ratio: float, round_to: int = 1) -> np.ndarray:
    """The fewest channels each group may keep: a prunable group loses at most ``max_ratio``
    of ``widths``, rounded up to a ``round_to`` multiple (no wider than the group; a group no
    wider than one block keeps at least one channel); a frozen group keeps its width."""
    step = max(1, round_to)
    out = np.array(widths, dtype=np.int64)
    for g, (w, p) in enumerate(zip(out.tolist(), prunable)):
        if p:
            f = max(1, math.ceil(w * (1 - max_ratio)))
            out[g] = min(w, math.ceil(f / step) * step) if w > step else f
    return out


def uniform(widths: Sequence[int], ratio: float, *, prunable: Sequence[bool], round_to: int = 1,
            dense: Sequence[int] | None = None) -> np.ndarray:
    """Remove the fraction ``ratio`` of every prunable group's channels (``dense``: the dense
    widths, which say which groups are narrower than a block; default ``widths``)."""
    if not 0.0 < ratio < 1.0:
        raise InputError(f"pruning ratio {ratio:g} is outside (0, 1)",
                         hint="give the fraction of channels to remove, e.g. --ratio 0.3")
    keep = np.array(widths, dtype=np.int64)
    dense = widths if dense is None else dense
    for g, (w, p) in enumerate(zip(widths, prunable)):
        if p:
            keep[g] = round_keep(max(1, int(math.floor(w * (1.0 - ratio) + 0.5))), w, round_to, int(dense[g]))
    return keep


def narrower(keep: int, dense: int, round_to: int) -> int:
    """One block narrower than ``keep``: the next lower multiple of ``round_to`` (12 -> 8, 16 -> 8),
    or one channel fewer in a group whose dense width is no more than one block, which
    :func:`round_keep` leaves unrounded (a group of 8 under x8 keeps 1-8 channels, as the
    uniform allocation gives it). A dense 16 cut to 8 in an earlier round stays a multiple."""
    step = block(dense, round_to)
    return (keep - 1) // step * step


def select_drop(scores: Sequence[np.ndarray], keep: Sequence[int]) -> dict[int, np.ndarray]:
    """The lowest-scoring ``width - keep`` channels of each group (ties: lower index first)."""
    drop = {}
    for g, (s, k) in enumerate(zip(scores, keep)):
        s = np.asarray(s)
        n = len(s) - int(k)
        if n > 0:
            drop[g] = np.sort(np.argsort(s, kind="stable")[:n])
    return drop


def global_ranking(widths: Sequence[int], scores: Sequence[np.ndarray], *, prunable: Sequence[bool],
                   cost: Callable[[np.ndarray], float], target: float,
                   unit_cost: Callable[[np.ndarray], np.ndarray] | None = None,
                   max_ratio: float = 0.9, round_to: int = 1, normalize: bool = True,
                   dense: Sequence[int] | None = None) -> np.ndarray:
    """Remove the globally least important channels (scores normalised per group by their
    mean, so criteria of different scale compare) until ``cost(keep) <= target``; no group
    loses more than ``max_ratio`` of its channels. Removal goes one round_to block at a time.
    ``unit_cost(keep)``: what removing one channel of each group saves at widths ``keep``;
    given, a block's importance is divided by it (importance lost per unit of cost saved, the
    greedy answer to the knapsack, as Group Fisher normalises its scores). ``normalize=False``
    ranks the scores as they are: only for criteria that estimate the loss change of a removal,
    which compare across groups (with per-group normalisation every group's mean channel is
    worth the same, and a cost divisor then strips the costliest groups to their floors).
    ``dense``: the dense model's widths, when ``widths`` are a pruned model's (an iterative
    round): they decide which groups are narrower than a block (default ``widths``)."""
    widths = np.asarray(widths, dtype=np.int64)
    dense = widths if dense is None else np.asarray(dense, dtype=np.int64)
    keep = widths.copy()
    if cost(keep) <= target:
        return keep
    step = max(1, round_to)
    floor = floors(widths, prunable, max_ratio, step)
    order = {g: np.sort(np.asarray(s, dtype=np.float64)) for g, s in enumerate(scores)}
    norm = {g: (s / (np.mean(s) + 1e-12)) for g, s in order.items()} if normalize else order
    while cost(keep) > target:
        best, best_value, best_to = -1, math.inf, 0
        unit = None if unit_cost is None else np.asarray(unit_cost(keep), dtype=np.float64)
        for g in range(len(widths)):
            to = narrower(int(keep[g]), int(dense[g]), step)
            if not prunable[g] or to < floor[g]:
                continue
            removed = widths[g] - keep[g]
            # importance lost per channel (blocks differ in size: a narrow group's is one channel)
            value = float(np.mean(norm[g][removed:removed + keep[g] - to]))
            if unit is not None:
                value /= max(float(unit[g]), 1e-12)
            if value < best_value:
                best, best_value, best_to = g, value, to
        if best < 0:
            raise BudgetError(f"the budget cannot be met: at most {1 - cost(keep) / cost(widths):.1%} "
                              "of the cost can be removed with the prunable channels",
                              hint="ask for a smaller reduction or allow more pruning per group")
        keep[best] = best_to
    if round_to > 1:  # a frozen group keeps its width, multiple or not
        keep = np.array([round_keep(k, w, round_to, d) if p else k
                         for k, w, d, p in zip(keep, widths, dense, prunable)])
    return keep
