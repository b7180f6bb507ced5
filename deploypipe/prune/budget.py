"""Budgets (how much to remove), one class per kind, and the allocation of kept channels under them.

``--ratio 0.3``            :class:`RatioBudget`: remove 30% of every prunable group's channels
                           (uniform) or of all prunable channels (global ranking)
``--macs-budget 0.5``      :class:`MacsBudget`: keep half the MACs; ``2x`` means 2x fewer; ``20M`` is absolute
``--params-budget ...``    :class:`ParamsBudget`: the same for parameters
``--latency-budget 5ms``   :class:`LatencyMsBudget`: measured latency on the target (see :mod:`deploypipe.hw`)
``--latency-ratio 0.5``    :class:`LatencyRatioBudget`: that fraction of the dense model's measured latency

Every budget has ``target(dense)``, ``describe()`` and ``to_dict()`` (kind, value and mode, as
``report.json`` records them). ``Budget.parse(kind, text)`` reads one and ``Budget(kind, value,
mode)`` builds the class of that kind. Channel budgets (ratio, MACs, parameters) count their
measure from the widths; latency budgets are met by the widths a measured plan fixed
(``GroupState.planned``).
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import numpy as np

from ..errors import BudgetError, InputError, UnsupportedError
from .allocate import global_ranking, round_keep, uniform
from .fill import fill, score_value, uniform_value
from .state import GroupState

KINDS = ("ratio", "macs", "params", "latency")
ALLOCATIONS = ("uniform", "global", "per-cost")
# uniform: every prunable group loses the same share; global: the least important channels anywhere
# (scores normalised per group); per-cost: the least loss per unit of the budget's cost saved
# (MACs or parameters; one per channel under a ratio), the scores as they are: a loss-estimating
# criterion's (taylor, fisher)
_SUFFIX = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}
Measure = Callable[[np.ndarray], float]


@dataclass(frozen=True)
class Budget:
    """How much to remove. ``value`` and ``mode`` as given: ``fraction`` (of the dense value
    kept; for a ratio, of the channels removed), ``reduction`` (Nx fewer), ``absolute`` or ``ms``."""

    kind: str
    value: float
    mode: str = "fraction"

    needs_latency_table: ClassVar[bool] = False  # measured on the target before pruning
    flag: ClassVar[str] = ""  # the build option that asks for it

    def __new__(cls, kind: str = "", value: float = 0.0, mode: str = "fraction"):
        return super().__new__(_class_of(kind, mode) if cls is Budget else cls)

    @classmethod
    def parse(cls, kind: str, text: str | float) -> "Budget":
        if kind not in KINDS:
            raise InputError(f"unknown budget kind {kind!r}", hint=f"use one of {', '.join(KINDS)}")
        s = str(text).strip().lower()
        if kind == "ratio":
            return RatioBudget.read(s)
        if kind == "latency" and s.endswith("ms"):
            return Budget(kind, _positive(_number(s[:-2], kind), s, kind), "ms")
        return Budget(kind, *_amount(kind, s, text))

    def target(self, dense: float) -> float:
        """The most the pruned model may keep, in the budget's measure, given the dense model's."""
        if self.mode == "fraction":
            return dense * self.value
        if self.mode == "reduction":
            return dense / self.value
        return self.value

    def describe(self) -> str:
        return {"fraction": f"keep {self.value:.0%} of the {self.kind}",
                "reduction": f"{self.value:g}x fewer {self.kind}",
                "absolute": f"{self.value:.4g} {self.kind}",
                "ms": f"{self.value:g} ms latency"}[self.mode]

    def to_dict(self) -> dict:
        return {"kind": self.kind, "value": self.value, "mode": self.mode}

    # -- measuring and allocating ---------------------------------------------------------
    def measure(self, state: GroupState) -> Measure:
        """The budget's measure of any widths of ``state``'s groups."""
        raise NotImplementedError

    def dense_value(self, state: GroupState) -> float:
        return float(self.measure(state)(state.dense))

    def met(self, state: GroupState, widths: np.ndarray, share: float = 1.0) -> bool:
        """Whether ``widths`` make ``share`` of the way from the dense model to the budget."""
        measure = self.measure(state)
        dense = float(measure(state.dense))
        return measure(widths) <= (dense - share * (dense - self.target(dense))) * (1 + 1e-9)

    def toward(self, dense: float, t: float) -> "Budget":
        """The budget ``t`` of the way (geometrically) from the dense value ``dense`` to this one."""
        return dataclasses.replace(self, value=dense * (self.target(dense) / dense) ** t, mode="absolute")

    def allocate(self, state: GroupState, *, allocation: str, round_to: int, max_ratio: float) -> np.ndarray:
        """Kept widths meeting the budget: global ranking by score, or ``uniform``."""
        measure = self.measure(state)
        target = self.target(float(measure(state.dense)))
        if allocation != "uniform":
            return global_ranking(state.widths, state.scores, prunable=state.prunable, cost=measure, target=target,
                                  **self.ranking(state, allocation), max_ratio=max_ratio, round_to=round_to,
                                  dense=state.dense)
        return self.uniform_widths(state, measure, target, round_to, max_ratio)

    def ranking(self, state: GroupState, allocation: str) -> dict[str, Any]:
        """How a global ``allocation`` ranks channels: per-cost divides raw scores by what one
        channel saves (:meth:`unit_cost`), global compares scores normalised per group."""
        per_cost = allocation == "per-cost"
        return {"unit_cost": self.unit_cost(state) if per_cost else None, "normalize": not per_cost}

    def unit_cost(self, state: GroupState) -> Callable[[np.ndarray], np.ndarray] | None:
        """What removing one channel of each group saves, by widths (None: one channel, one unit)."""
        return None

    def uniform_widths(self, state: GroupState, measure: Measure, target: float, round_to: int,
                       max_ratio: float) -> np.ndarray:
        """The smallest uniform ratio whose widths meet ``target`` (bisection)."""
        widths = state.widths
        lo, hi = 0.0, max_ratio
        best = state.floors(max_ratio, round_to)
        for _ in range(40):
            mid = (lo + hi) / 2
            keep = (uniform(widths, mid, prunable=state.prunable, round_to=round_to, dense=state.dense) if mid > 0
                    else widths.copy())
            if measure(keep) <= target:
                best, hi = keep, mid
            else:
                lo = mid
        return best

    def allocate_toward(self, state: GroupState, t: float, **how) -> np.ndarray:
        """Kept widths ``t`` of the way (geometrically) from the dense model to the budget."""
        return self.toward(self.dense_value(state), t).allocate(state, **how)

    def removal(self, state: GroupState) -> int | None:
        """The channels the budget removes, when it says so exactly (a ratio); else None."""
        return None


class RatioBudget(Budget):
    """Remove the fraction ``value`` of the prunable channels; measured in prunable channels kept."""

    flag = "--ratio"

    @classmethod
    def read(cls, s: str) -> "RatioBudget":
        value = _number(s, "ratio")
        if not 0 < value < 1:
            raise InputError(f"pruning ratio {s} is outside (0, 1)",
                             hint="give the fraction of channels to remove, e.g. --ratio 0.3")
        return Budget("ratio", value)

    def target(self, dense: float) -> float:
        return dense * (1 - self.value)

    def describe(self) -> str:
        return f"remove {self.value:.0%} of channels"

    def measure(self, state: GroupState) -> Measure:
        ids = state.prunable_ids()
        return lambda widths: float(np.sum(np.asarray(widths)[ids]))

    def toward(self, dense: float, t: float) -> "Budget":
        return dataclasses.replace(self, value=1.0 - (1.0 - self.value) ** t)

    def uniform_widths(self, state, measure, target, round_to, max_ratio) -> np.ndarray:
        """Every prunable group loses ``value`` of its dense channels (never more than it has now)."""
        return np.minimum(uniform(state.dense, self.value, prunable=state.prunable, round_to=round_to), state.widths)

    def removal(self, state: GroupState) -> int | None:
        return max(1, math.ceil(self.value * float(np.sum(state.dense[state.prunable_ids()])) - 1e-9))


class CostBudget(Budget):
    """MACs or parameters, measured exactly from the widths by the dense model's cost model."""

    def measure(self, state: GroupState) -> Measure:
        return getattr(state.cost, self.kind)

    def allocate(self, state: GroupState, *, allocation: str, round_to: int, max_ratio: float) -> np.ndarray:
        """The allocation's widths, then blocks given back while the cost stays within the
        budget (:mod:`deploypipe.prune.fill`): rounded widths move the cost in steps, and the
        first rounded answer under the budget removed up to 3.5x where 2x was asked."""
        self._check_reachable(state, max_ratio, round_to)
        keep = super().allocate(state, allocation=allocation, round_to=round_to, max_ratio=max_ratio)
        measure = self.measure(state)
        if allocation == "uniform":
            value = uniform_value(state.dense)
        else:
            how = self.ranking(state, allocation)
            unit = how["unit_cost"]
            value = score_value(state.scores, None if unit is None else unit(keep), normalize=how["normalize"])
        return fill(state.widths, keep, state.prunable, cost=measure, target=self.target(float(measure(state.dense))),
                    round_to=round_to, value=value, dense=state.dense)

    def unit_cost(self, state: GroupState) -> Callable[[np.ndarray], np.ndarray]:
        """MACs (parameters) saved by one channel of each group at the widths given."""
        return getattr(state.cost, f"marginal_{self.kind}")

    def _check_reachable(self, state: GroupState, max_ratio: float, round_to: int) -> None:
        measure = self.measure(state)
        target = self.target(self.dense_value(state))
        floor = measure(state.floors(max_ratio, round_to))
        if floor > target:
            dense = measure(state.widths)
            raise BudgetError(f"the {self.kind} budget ({target:.4g}, {target / dense:.1%} of the dense "
                              f"{dense:.4g}) is below the {floor:.4g} left when every prunable group loses "
                              f"{max_ratio:.0%} of its channels",
                              hint=f"ask for at most {dense / floor:.2f}x fewer {self.kind}")


class MacsBudget(CostBudget):
    """Multiply-accumulates kept."""

    flag = "--macs-budget"


class ParamsBudget(CostBudget):
    """Parameters kept."""

    flag = "--params-budget"


class LatencyBudget(Budget):
    """Measured latency on the target: a measured plan (:func:`deploypipe.hw.latency_loop`)
    fixes the widths before pruning, and the methods prune to them."""

    needs_latency_table = True

    def measure(self, state: GroupState) -> Measure:
        raise InputError(f"{self.describe()} is measured on the target, not counted from the widths",
                         hint="use a method that supports latency budgets (deploypipe list methods), "
                              "or --ratio, --macs-budget or --params-budget")

    def toward(self, dense: float, t: float) -> "Budget":
        raise InputError(f"{self.describe()} cannot be split into steps of cost: a latency budget is met by "
                         "measured widths", hint="use --ratio, --macs-budget or --params-budget")

    def allocate(self, state: GroupState, *, allocation: str, round_to: int, max_ratio: float) -> np.ndarray:
        """The plan's widths (never wider than now)."""
        return np.minimum(self._planned(state), state.widths)

    def allocate_toward(self, state: GroupState, t: float, **how) -> np.ndarray:
        """Widths ``t`` of the way (geometrically, per group) from the dense widths to the plan's,
        rounded to ``round_to``; the plan's at ``t`` = 1."""
        planned = np.minimum(self._planned(state), state.widths)
        if t >= 1:
            return planned
        step = np.array([round_keep(int(round(d * (p / d) ** t)), d, how.get("round_to", 1))
                         for d, p in zip(state.dense.tolist(), planned.tolist())])
        return np.clip(step, planned, state.widths)

    @staticmethod
    def _planned(state: GroupState) -> np.ndarray:
        if state.planned is None:
            raise InputError("a latency budget needs a latency table measured on the target",
                             hint="use `deploypipe build --latency-budget` or --latency-ratio, which measures one")
        return state.planned


class LatencyMsBudget(LatencyBudget):
    """An absolute latency in ms (``5ms``)."""

    flag = "--latency-budget"


class LatencyRatioBudget(LatencyBudget):
    """A fraction of the dense model's measured latency (``--latency-ratio 0.5``; ``2x``: half)."""

    flag = "--latency-ratio"


CHANNEL_BUDGETS: tuple[type[Budget], ...] = (RatioBudget, MacsBudget, ParamsBudget)
ALL_BUDGETS: tuple[type[Budget], ...] = CHANNEL_BUDGETS + (LatencyMsBudget, LatencyRatioBudget)
_CLASSES = {("ratio", "fraction"): RatioBudget,
            **{("macs", m): MacsBudget for m in ("fraction", "reduction", "absolute")},
            **{("params", m): ParamsBudget for m in ("fraction", "reduction", "absolute")},
            ("latency", "ms"): LatencyMsBudget, ("latency", "absolute"): LatencyMsBudget,
            ("latency", "fraction"): LatencyRatioBudget, ("latency", "reduction"): LatencyRatioBudget}


def _class_of(kind: str, mode: str) -> type[Budget]:
    try:
        return _CLASSES[(kind, mode)]
    except KeyError:
        raise InputError(f"there is no {kind!r} budget given as {mode!r}",
                         hint=f"use one of {', '.join(KINDS)}, as a fraction, a reduction (2x) or absolute") from None


def _amount(kind: str, s: str, text) -> tuple[float, str]:
    """A MACs, parameters or latency amount: ``2x`` (reduction), ``20M`` or > 1 (absolute), a fraction."""
    if s.endswith("x"):
        value = _positive(_number(s[:-1], kind), s, kind)
        if value <= 1:
            raise InputError(f"a {kind} reduction of {s} removes nothing", hint="use e.g. 2x")
        return value, "reduction"
    m = re.fullmatch(r"([0-9.eE+-]+)\s*([kmgt]?)", s)
    if not m:
        raise InputError(f"cannot read {kind} budget {text!r}", hint="write 0.5 (fraction kept), 2x or 20M")
    value = _positive(_number(m.group(1), kind), s, kind)
    if m.group(2) or value > 1:
        return value * _SUFFIX[m.group(2)], "absolute"
    if value >= 1:
        raise InputError(f"a {kind} budget of {s} keeps everything", hint="give a fraction below 1, e.g. 0.5")
    return value, "fraction"


def _number(s: str, kind: str) -> float:
    try:
        return float(s)
    except ValueError:
        raise InputError(f"cannot read {kind} budget {s!r}", hint="write a number such as 0.5, 2x or 20M") from None


def _positive(v: float, s: str, kind: str) -> float:
    if not math.isfinite(v) or v <= 0:
        raise InputError(f"{kind} budget {s} is not a positive number", hint="e.g. 0.5, 2x or 20M")
    return v


def _why_frozen(reasons: tuple[str, ...], shown: int = 2) -> str:
    """'every group is frozen (A; B; and 3 more)': the distinct reasons, the most common first."""
    from collections import Counter

    counts = Counter(r for r in reasons if r)
    if not counts:
        return "every group is frozen by an op or a layer whose channels cannot be removed"
    named = [r for r, _ in counts.most_common(shown)]
    more = len(counts) - len(named)
    return f"every group is frozen ({'; '.join(named)}{f'; and {more} more reasons' if more else ''})"


def allocate(state: GroupState, budget: Budget, *, allocation: str = "uniform", round_to: int = 1,
             max_ratio: float = 0.9) -> np.ndarray:
    """Kept channels per group meeting ``budget``. Ratios count against ``state.dense`` (the
    model before any round of pruning), MACs and parameters are measured by ``state.cost``."""
    if allocation not in ALLOCATIONS:
        raise InputError(f"unknown allocation {allocation!r}", hint=f"use one of {', '.join(ALLOCATIONS)}")
    if not any(state.prunable):  # else a ratio 'met' nothing and a cost budget said "at most 1.00x"
        raise UnsupportedError("the model has no prunable channel group: " + _why_frozen(state.frozen_by),
                               hint="`deploypipe inspect MODEL` lists every group and what froze it")
    return budget.allocate(state, allocation=allocation, round_to=round_to, max_ratio=max_ratio)


__all__ = ["ALL_BUDGETS", "Budget", "CHANNEL_BUDGETS", "CostBudget", "LatencyBudget", "LatencyMsBudget",
           "LatencyRatioBudget", "MacsBudget", "ParamsBudget", "RatioBudget", "allocate"]
