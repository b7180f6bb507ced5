"""Allocation under a latency budget (HALP): channels kept in importance order per group,
at least one block per group, total kept importance maximised by an exact knapsack over the
per-group latency tables.

The knapsack's value is the share of each group's importance kept (scores of any
criterion normalised by the group's total), counted once per layer the group's channels
live in (its weight tensors): it maximises the importance share kept, summed over layers.
A per-channel value (scores normalised by the group mean, as the global MACs allocation
ranks) made a channel of a 16-wide group worth as much as one of a 960-wide group, and a
residual-stream channel shared by 19 convolutions worth as much as one inside a block; the
knapsack then stripped the residual streams and the narrow early layers first, where
latency is cheap to buy and accuracy is not. Measured at the same latency on cpu-batch32
(L1 scores, 1 epoch of fine-tuning on 2,000 MNIST images,
``benchmarks/results/latency_budget.json`` and its history): mobilenet_v2 at 0.5 of the
dense latency 95.3% against 91.1% with per-channel values (uniform 95.5%); resnet56 at 0.3
88.1% against 76.3% (uniform 81.8%, one run). The share alone is nearly linear in the
channels kept (L1 scores vary little inside a layer), so the knapsack cut a few groups to
their floor (mobilenet_v2 at 0.3 kept 87.7% against uniform's 94.3%); the value is therefore
``1 - (1 - share)^2`` (:data:`VALUE_EXPONENT`), diminishing returns: the last channels of a
narrow group are worth more than as many of a full one (93.6% there). A width whose
table latency is no lower than a wider option's is never offered: cutting channels that
buy no time (a misaligned width, or a measured step backwards) only loses accuracy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from ..errors import BudgetError
from ..prune.allocate import round_keep
from ..prune.budget import Budget
from . import knapsack
from .coupling import Coupling
from .table import LatencyTable


def width_options(dense: int, current: int, round_to: int, max_ratio: float) -> list[int]:
    """Widths a group may keep: multiples of ``round_to`` (any width for a group no wider
    than one block) from its ``max_ratio`` floor up to its current width, and the current one."""
    floor = round_keep(max(1, math.ceil(dense * (1 - max_ratio))), dense, round_to)
    if dense <= round_to:
        return list(range(min(floor, current), current + 1))
    multiples = range(round_to * math.ceil(floor / round_to), current + 1, round_to)
    return sorted({w for w in multiples if w >= floor} | {current})


def undominated(options: Sequence[int], latency) -> list[int]:
    """Drop every width that is not faster than some wider option (steer away from steps)."""
    keep, best_wider = [], math.inf
    for w in sorted(options, reverse=True):
        t = latency(w)
        if t < best_wider:
            keep.append(w)
            best_wider = t
    return sorted(keep)


def kept_value(scores: np.ndarray, layers: float = 1.0, exponent: float = 1.0) -> np.ndarray:
    """``value[k-1]``: the share of the group's importance that its best ``k`` channels
    hold, times the number of ``layers`` the group's channels live in. ``exponent`` q > 1
    makes it ``1 - (1 - share) ** q``: diminishing returns, each channel cut from an already
    narrow group worth more than one cut from a full group."""
    s = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    total = float(np.sum(s))
    share = np.cumsum(s) / total if total > 0 else np.arange(1, len(s) + 1) / max(len(s), 1)
    return layers * (1 - (1 - np.minimum(share, 1.0)) ** exponent)


def layer_counts(analysis) -> dict[int, int]:
    """Per group: the weight tensors (convolutions, linear layers) its channels live in."""
    return {g.id: max(1, sum(m.kind == "weight" for m in g.members)) for g in analysis.groups}


# The kept value's exponent: 1 - (1 - share)^2 by default. With the share itself (1) the L1
# values were nearly linear and the knapsack cut a few groups to their floor. Measured at the
# same latency on cpu-batch32 (L1, 1 epoch on 2,000 MNIST images, one seed,
# benchmarks/results/latency_budget_value_exponent.json against latency_budget.json at b0a0fde):
# mobilenet_v2 at 0.3 of dense 93.6% against 87.7% (uniform 94.3% / 93.2%), at 0.5 96.3%
# against 95.2%, at 0.7 96.6% against 96.1%; resnet56 at 0.3 88.2% against 87.4%, at 0.7
# 92.2% against 90.8%, at 0.5 89.5% against 90.9% (its model 4% faster). The full benchmark
# run with it (latency_budget.json after b0a0fde): mobilenet_v2 93.4 / 96.3 / 96.3% at
# 0.3 / 0.5 / 0.7 (uniform 94.3 / 95.5 / 97.0%), resnet56 89.0 / 89.1 / 92.1% (uniform
# 81.8 / 91.4 / 91.8%).
VALUE_EXPONENT = 2.0


@dataclass
class LatencyAllocator:
    """Kept widths under a latency budget from ``table`` (group ids of the dense model).

    The prediction is ``dense_ms * (1 + scale * sum_g rho_g * (T_g(w_g) - T_g(w0_g)) / table.dense_ms)``:
    the table's relative change applied to the dense latency measured now (the table and
    the dense model may have met different machine load), ``scale`` the loop's correction
    of the table (measured saving / predicted saving), ``rho_g`` the coupling factors
    (``coupling=None``: 1, the plain HALP sum). ``aim`` is the share of the budget that
    allocations aim at (the loop aims inside its tolerance window). ``layers`` weighs each
    group's value by the layers its channels live in (``None``: 1 each); :meth:`for_model`
    fills it and the coupling from the model's analysis."""

    table: LatencyTable
    round_to: int = 1
    max_ratio: float = 0.9
    scale: float = 1.0
    dense_ms: float | None = None
    aim: float = 1.0
    coupling: Coupling | None = None
    fastest_fits: bool = False  # measured: the fastest widths meet the budget the table puts out of reach
    layers: Mapping[int, int] | None = None
    # measured widths for one budget (ms, as ``budget_ms`` gives it): the loop's walk between two
    # measured models found them, no scale of the table reproduces them
    pinned: tuple[int, ...] | None = None
    pinned_ms: float | None = None
    exponent: float = VALUE_EXPONENT  # of the kept value (see :func:`kept_value`); 1: the share itself

    @classmethod
    def for_model(cls, table: LatencyTable, analysis, *, round_to: int = 1, max_ratio: float = 0.9,
                  coupled: bool = True, exponent: float = VALUE_EXPONENT) -> "LatencyAllocator":
        """The allocator for ``analysis``'s model: coupling factors and layer weights from it."""
        return cls(table, round_to=round_to, max_ratio=max_ratio, layers=layer_counts(analysis),
                   coupling=Coupling.of(analysis) if coupled else None, exponent=exponent)

    def value(self, scores: np.ndarray, gid: int) -> np.ndarray:
        """Group ``gid``'s kept value by width (see :func:`kept_value`)."""
        return kept_value(scores, (self.layers or {}).get(gid, 1), self.exponent)

    @property
    def dense(self) -> float:
        return self.table.dense_ms if self.dense_ms is None else self.dense_ms

    def budget_ms(self, budget: Budget) -> float:
        """The latency an allocation for ``budget`` aims at, in ms."""
        return self.aim * budget.target(self.dense)

    def predict(self, widths: Sequence[int]) -> float:
        """Predicted latency (ms) at ``widths`` (all groups)."""
        return self._raw(widths, self._rho(widths))

    @property
    def unit(self) -> float:
        """ms now per ms of table change (with the loop's correction)."""
        return self.scale * self.dense / self.table.dense_ms

    def _rho(self, widths: Sequence[int]) -> dict[int, float]:
        return self.coupling.rho(widths) if self.coupling is not None else {}

    def _raw(self, widths: Sequence[int], rho: dict[int, float]) -> float:
        """The prediction with the coupling factors fixed at ``rho``."""
        t = self.table.groups
        delta = sum(rho.get(g, 1.0) * (t[g].latency(int(widths[g])) - t[g].latency(t[g].width))
                    for g in range(len(widths)) if g in t)
        return self.dense + self.unit * delta

    def options(self, gid: int, current: int) -> list[int]:
        t = self.table.groups[gid]
        return undominated(width_options(t.width, current, self.round_to, self.max_ratio), t.latency)

    def fastest(self, widths: Sequence[int], prunable: Sequence[bool]) -> np.ndarray:
        """Every group that the table covers at its cheapest allowed width."""
        keep = np.array(widths, dtype=np.int64)
        for g in self._items(widths, prunable):
            keep[g] = min(self.options(g, int(widths[g])), key=lambda w: (self.table.latency(g, w), w))
        return keep

    def keep(self, widths: Sequence[int], scores: Sequence[np.ndarray], prunable: Sequence[bool],
             budget_ms: float) -> np.ndarray:
        """Widths that maximise kept importance with ``predict(widths) <= budget_ms``. With a
        coupling, the knapsack runs with each group's factor fixed at the last answer's widths
        until the answer repeats (a few rounds); the best answer that the full model accepts wins.
        At the budget of :attr:`pinned` widths, those (no wider than ``widths``)."""
        if self.pinned is not None and math.isclose(budget_ms, self.pinned_ms, rel_tol=1e-9):
            return np.minimum(np.array(self.pinned, dtype=np.int64), np.asarray(widths, dtype=np.int64))
        fastest = self.fastest(widths, prunable)
        if self.predict(fastest) > budget_ms * (1 + 1e-9):
            if self.fastest_fits:
                return fastest
            raise self._out_of_reach(budget_ms, fastest)
        problem = _Problem(self, widths, scores, prunable, budget_ms)
        rho = self._rho(widths)
        answers: list[tuple[np.ndarray, float]] = []
        for _ in range(COUPLING_ROUNDS if self.coupling is not None else 1):
            answer = problem.solve(rho) or problem.solve(self._rho(fastest))
            if answer is None or any(np.array_equal(answer[0], a) for a, _ in answers):
                break
            answers.append(answer)
            rho = self._rho(answer[0])
        return _best(self, answers, budget_ms, fastest)

    def _out_of_reach(self, budget_ms: float, fastest: np.ndarray) -> BudgetError:
        fast = self.predict(fastest)
        return BudgetError(f"the latency budget of {budget_ms:.4g} ms is below the fastest achievable "
                           f"{fast:.4g} ms (predicted: every prunable group at its smallest width)",
                           hint=f"ask for at least {fast:.4g} ms, or allow more pruning per group with --max-ratio")

    def _items(self, widths: Sequence[int], prunable: Sequence[bool]) -> list[int]:
        return [g for g in range(len(widths)) if prunable[g] and g in self.table.groups]


COUPLING_ROUNDS = 6


class _Problem:
    """One allocation: the knapsack's options and values, solved for given group factors."""

    def __init__(self, alloc: LatencyAllocator, widths, scores, prunable, budget_ms: float):
        self.alloc, self.widths, self.budget_ms = alloc, np.array(widths, dtype=np.int64), budget_ms
        self.items = alloc._items(widths, prunable)
        self.opts = {g: alloc.options(g, int(widths[g])) for g in self.items}
        self.values = [alloc.value(scores[g], g)[np.array(self.opts[g]) - 1] for g in self.items]

    def solve(self, rho: dict[int, float]) -> tuple[np.ndarray, float] | None:
        """The knapsack with group factors ``rho``: (widths, kept value), or None if infeasible."""
        a, t = self.alloc, self.alloc.table
        fixed = a._raw(self.widths, rho) - a.unit * sum(rho.get(g, 1.0) * t.latency(g, int(self.widths[g]))
                                                        for g in self.items)
        costs = [[a.unit * rho.get(g, 1.0) * t.latency(g, w) for w in self.opts[g]] for g in self.items]
        choice = knapsack.solve(costs, self.values, self.budget_ms - fixed)
        if choice is None:
            return None
        keep = self.widths.copy()
        for g, k in zip(self.items, choice.picks):
            keep[g] = self.opts[g][k]
        return keep, choice.value


def _best(alloc: LatencyAllocator, answers: list[tuple[np.ndarray, float]], budget_ms: float,
          fastest: np.ndarray) -> np.ndarray:
    """The most valuable answer the full model accepts (the fastest one if none is)."""
    ok = [(v, k) for k, v in answers if alloc.predict(k) <= budget_ms * (1 + 1e-9)]
    if ok:
        return max(ok, key=lambda item: item[0])[1]
    return min([k for k, _ in answers] or [fastest], key=alloc.predict)
