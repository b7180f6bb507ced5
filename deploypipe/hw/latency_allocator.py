"""Allocation under a latency budget (HALP): channels kept in importance order per group,
at least one block per group, total kept importance maximised by an exact knapsack over the
per-group latency tables.

The knapsack's value is ``1 - (1 - share)^2`` of each group's importance kept (scores of any
criterion normalised by the group's total), counted once per layer the group's channels live
in: per-channel values stripped residual streams and narrow early layers first, and the
share alone cut a few groups to their floor (``benchmarks/results/latency_budget.json`` and
``latency_budget_value_exponent.json`` hold the comparisons). A width whose table latency is
no lower than a wider option's is never offered: it only loses accuracy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from ..errors import BudgetError
from ..prune.allocate import floors
from ..prune.state import GroupState
from . import knapsack
from .coupling import Coupling
from .table import LatencyTable


def width_options(dense: int, current: int, round_to: int, max_ratio: float) -> list[int]:
    """Widths a group may keep: multiples of ``round_to`` (any width for a group no wider
    than one block) from its :func:`~deploypipe.prune.allocate.floors` width up to its current
    width, and the current one."""
    floor = int(floors([dense], [True], max_ratio, round_to)[0])
    if dense <= round_to:
        return list(range(min(floor, current), current + 1))
    return sorted({w for w in range(floor, current + 1, round_to)} | {current})


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


# The kept value's exponent (diminishing returns; 1: the share itself). The measurements that
# chose it: benchmarks/results/latency_budget_value_exponent.json.
VALUE_EXPONENT = 2.0


@dataclass(frozen=True)
class Calibration:
    """How the table's prediction meets the target now: ``dense_ms`` the dense model measured
    now (the table and the model may have met different machine load) and ``scale`` the
    correction of the table's changes (measured saving / predicted saving)."""

    dense_ms: float
    scale: float = 1.0


@dataclass(frozen=True)
class LatencyAllocator:
    """Kept widths under a latency budget from ``table`` (group ids of the dense model).

    The prediction under a :class:`Calibration` is
    ``dense_ms * (1 + scale * sum_g rho_g * (T_g(w_g) - T_g(w0_g)) / table.dense_ms)``:
    the table's relative change applied to the dense latency measured now, ``rho_g`` the
    coupling factors (``coupling=None``: 1, the plain HALP sum); no calibration: the table's
    own dense latency, scale 1. ``layers`` weighs each group's value by the layers its
    channels live in (``None``: 1 each); :meth:`for_model` fills it and the coupling from the
    model's analysis."""

    table: LatencyTable
    round_to: int = 1
    max_ratio: float = 0.9
    coupling: Coupling | None = None
    layers: Mapping[int, int] | None = None
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

    def calibrated(self, cal: Calibration | None) -> Calibration:
        return Calibration(self.table.dense_ms) if cal is None else cal

    def predict(self, widths: Sequence[int], cal: Calibration | None = None) -> float:
        """Predicted latency (ms) at ``widths`` (all groups)."""
        return self._raw(widths, self._rho(widths), self.calibrated(cal))

    def unit(self, cal: Calibration) -> float:
        """ms now per ms of table change (with the calibration's correction)."""
        return cal.scale * cal.dense_ms / self.table.dense_ms

    def _rho(self, widths: Sequence[int]) -> dict[int, float]:
        return self.coupling.rho(widths) if self.coupling is not None else {}

    def _raw(self, widths: Sequence[int], rho: dict[int, float], cal: Calibration) -> float:
        """The prediction with the coupling factors fixed at ``rho``."""
        t = self.table.groups
        delta = sum(rho.get(g, 1.0) * (t[g].latency(int(widths[g])) - t[g].latency(t[g].width))
                    for g in range(len(widths)) if g in t)
        return cal.dense_ms + self.unit(cal) * delta

    def options(self, gid: int, current: int) -> list[int]:
        t = self.table.groups[gid]
        return undominated(width_options(t.width, current, self.round_to, self.max_ratio), t.latency)

    def items(self, state: GroupState) -> list[int]:
        """The groups the allocation may cut: prunable and covered by the table."""
        return [g for g in range(len(state.widths)) if state.prunable[g] and g in self.table.groups]

    def fastest(self, state: GroupState) -> np.ndarray:
        """Every group that the table covers at its cheapest allowed width."""
        keep = state.widths.copy()
        for g in self.items(state):
            keep[g] = min(self.options(g, int(state.widths[g])), key=lambda w: (self.table.latency(g, w), w))
        return keep

    def keep(self, state: GroupState, budget_ms: float, cal: Calibration | None = None) -> np.ndarray:
        """Widths that maximise kept importance with ``predict(widths) <= budget_ms``. With a
        coupling, the knapsack runs with each group's factor fixed at the last answer's widths
        until the answer repeats (a few rounds); the best answer that the full model accepts wins."""
        cal = self.calibrated(cal)
        fastest = self.fastest(state)
        if self.predict(fastest, cal) > budget_ms * (1 + 1e-9):
            raise self.out_of_reach(budget_ms, fastest, cal)
        problem = _Problem(self, state, budget_ms, cal)
        rho = self._rho(state.widths)
        answers: list[tuple[np.ndarray, float]] = []
        for _ in range(COUPLING_ROUNDS if self.coupling is not None else 1):
            answer = problem.solve(rho) or problem.solve(self._rho(fastest))
            if answer is None or any(np.array_equal(answer[0], a) for a, _ in answers):
                break
            answers.append(answer)
            rho = self._rho(answer[0])
        return _best(self, answers, budget_ms, fastest, cal)

    def out_of_reach(self, budget_ms: float, fastest: np.ndarray, cal: Calibration | None = None) -> BudgetError:
        fast = self.predict(fastest, cal)
        return BudgetError(f"the latency budget of {budget_ms:.4g} ms is below the fastest achievable "
                           f"{fast:.4g} ms (predicted: every prunable group at its smallest width)",
                           hint=f"ask for at least {fast:.4g} ms, or allow more pruning per group with --max-ratio")


COUPLING_ROUNDS = 6


class _Problem:
    """One allocation: the knapsack's options and values, solved for given group factors."""

    def __init__(self, alloc: LatencyAllocator, state: GroupState, budget_ms: float, cal: Calibration):
        self.alloc, self.widths, self.budget_ms, self.cal = alloc, state.widths, budget_ms, cal
        self.items = alloc.items(state)
        self.opts = {g: alloc.options(g, int(state.widths[g])) for g in self.items}
        self.values = [alloc.value(state.scores[g], g)[np.array(self.opts[g]) - 1] for g in self.items]

    def solve(self, rho: dict[int, float]) -> tuple[np.ndarray, float] | None:
        """The knapsack with group factors ``rho``: (widths, kept value), or None if infeasible."""
        a, t, unit = self.alloc, self.alloc.table, self.alloc.unit(self.cal)
        fixed = a._raw(self.widths, rho, self.cal) - unit * sum(rho.get(g, 1.0) * t.latency(g, int(self.widths[g]))
                                                                for g in self.items)
        costs = [[unit * rho.get(g, 1.0) * t.latency(g, w) for w in self.opts[g]] for g in self.items]
        choice = knapsack.solve(costs, self.values, self.budget_ms - fixed)
        if choice is None:
            return None
        keep = self.widths.copy()
        for g, k in zip(self.items, choice.picks):
            keep[g] = self.opts[g][k]
        return keep, choice.value


def _best(alloc: LatencyAllocator, answers: list[tuple[np.ndarray, float]], budget_ms: float,
          fastest: np.ndarray, cal: Calibration) -> np.ndarray:
    """The most valuable answer the full model accepts (the fastest one if none is)."""
    ok = [(v, k) for k, v in answers if alloc.predict(k, cal) <= budget_ms * (1 + 1e-9)]
    if ok:
        return max(ok, key=lambda item: item[0])[1]
    return min([k for k, _ in answers] or [fastest], key=lambda k: alloc.predict(k, cal))
