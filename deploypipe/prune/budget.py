"""Budgets (how much to remove) and the allocation of kept channels under them.

``--ratio 0.3``           remove 30% of every prunable group's channels (uniform) or of all
                          prunable channels (global ranking)
``--macs-budget 0.5``     keep half the MACs; ``2x`` means 2x fewer; ``20M`` is absolute
``--params-budget ...``   the same for parameters
``--latency-budget 5ms``  measured latency (see :mod:`deploypipe.hw`)
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import BudgetError, InputError
from ..graph.cost import CostModel
from .allocate import global_ranking, round_keep, uniform

KINDS = ("ratio", "macs", "params", "latency")
_SUFFIX = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}


@dataclass(frozen=True)
class Budget:
    kind: str
    value: float  # ratio: fraction removed; others: see ``mode``
    mode: str = "fraction"  # fraction (of dense kept) | absolute | reduction (Nx fewer) | ms

    @classmethod
    def parse(cls, kind: str, text: str | float) -> "Budget":
        if kind not in KINDS:
            raise InputError(f"unknown budget kind {kind!r}", hint=f"use one of {', '.join(KINDS)}")
        s = str(text).strip().lower()
        if kind == "ratio":
            value = _number(s, kind)
            if not 0 < value < 1:
                raise InputError(f"pruning ratio {s} is outside (0, 1)",
                                 hint="give the fraction of channels to remove, e.g. --ratio 0.3")
            return cls(kind, value)
        if kind == "latency" and s.endswith("ms"):
            return cls(kind, _positive(_number(s[:-2], kind), s, kind), "ms")
        if s.endswith("x"):
            value = _positive(_number(s[:-1], kind), s, kind)
            if value <= 1:
                raise InputError(f"a {kind} reduction of {s} removes nothing", hint="use e.g. 2x")
            return cls(kind, value, "reduction")
        m = re.fullmatch(r"([0-9.eE+-]+)\s*([kmgt]?)", s)
        if not m:
            raise InputError(f"cannot read {kind} budget {text!r}", hint="write 0.5 (fraction kept), 2x or 20M")
        value = _positive(_number(m.group(1), kind), s, kind)
        if m.group(2) or value > 1:
            return cls(kind, value * _SUFFIX[m.group(2)], "absolute")
        if value >= 1:
            raise InputError(f"a {kind} budget of {s} keeps everything", hint="give a fraction below 1, e.g. 0.5")
        return cls(kind, value, "fraction")

    def target(self, dense: float) -> float:
        """The budget in absolute units, given the dense model's value."""
        if self.mode == "fraction":
            return dense * self.value
        if self.mode == "reduction":
            return dense / self.value
        return self.value

    def describe(self) -> str:
        if self.kind == "ratio":
            return f"remove {self.value:.0%} of channels"
        return {"fraction": f"keep {self.value:.0%} of the {self.kind}",
                "reduction": f"{self.value:g}x fewer {self.kind}",
                "absolute": f"{self.value:.4g} {self.kind}",
                "ms": f"{self.value:g} ms latency"}[self.mode]

    def to_dict(self) -> dict:
        return {"kind": self.kind, "value": self.value, "mode": self.mode}


def _number(s: str, kind: str) -> float:
    try:
        return float(s)
    except ValueError:
        raise InputError(f"cannot read {kind} budget {s!r}", hint="write a number such as 0.5, 2x or 20M") from None


def _positive(v: float, s: str, kind: str) -> float:
    if not math.isfinite(v) or v <= 0:
        raise InputError(f"{kind} budget {s} is not a positive number", hint="e.g. 0.5, 2x or 20M")
    return v


def allocate(widths: Sequence[int], scores: Sequence[np.ndarray], prunable: Sequence[bool],
             budget: Budget, cost: CostModel, *, dense_value: float, dense_widths: Sequence[int] | None = None,
             allocation: str = "uniform", round_to: int = 1, max_ratio: float = 0.9) -> np.ndarray:
    """Kept channels per group meeting ``budget``. Ratios count against ``dense_widths``
    (the model before any round of pruning), MACs and parameters are measured by ``cost``."""
    widths = np.asarray(widths, dtype=np.int64)
    base = widths if dense_widths is None else np.asarray(dense_widths, dtype=np.int64)
    if allocation not in ("uniform", "global"):
        raise InputError(f"unknown allocation {allocation!r}", hint="use uniform or global")
    if budget.kind == "ratio":
        if allocation == "uniform":
            return np.minimum(uniform(base, budget.value, prunable=prunable, round_to=round_to), widths)
        total = float(sum(w for w, p in zip(base, prunable) if p))
        count = lambda keep: float(sum(k for k, p in zip(keep, prunable) if p))  # noqa: E731
        return global_ranking(widths, scores, prunable=prunable, cost=count, target=total * (1 - budget.value),
                              max_ratio=max_ratio, round_to=round_to)
    if budget.kind not in ("macs", "params"):
        raise InputError(f"a {budget.kind} budget needs the hardware-aware allocator",
                         hint="use --macs-budget, --params-budget or --ratio here")
    measure = cost.macs if budget.kind == "macs" else cost.params
    target = budget.target(dense_value)
    _check_reachable(widths, prunable, measure, target, budget, max_ratio, round_to)
    if allocation == "global":
        return global_ranking(widths, scores, prunable=prunable, cost=measure, target=target,
                              max_ratio=max_ratio, round_to=round_to)
    return _uniform_to_target(widths, prunable, measure, target, round_to, max_ratio)


def _floor_widths(widths, prunable, max_ratio, round_to) -> np.ndarray:
    return np.array([round_keep(max(1, math.ceil(w * (1 - max_ratio))), w, round_to) if p else w
                     for w, p in zip(widths, prunable)])


def _check_reachable(widths, prunable, measure, target, budget: Budget, max_ratio, round_to) -> None:
    floor = measure(_floor_widths(widths, prunable, max_ratio, round_to))
    if floor > target:
        dense = measure(widths)
        raise BudgetError(f"the {budget.kind} budget ({target:.4g}, {target / dense:.1%} of the dense "
                          f"{dense:.4g}) is below the {floor:.4g} left when every prunable group loses "
                          f"{max_ratio:.0%} of its channels",
                          hint=f"ask for at most {dense / floor:.2f}x fewer {budget.kind}")


def _uniform_to_target(widths, prunable, measure, target, round_to, max_ratio) -> np.ndarray:
    """The smallest uniform ratio whose widths meet the target (bisection)."""
    lo, hi = 0.0, max_ratio
    best = _floor_widths(widths, prunable, max_ratio, round_to)
    for _ in range(40):
        mid = (lo + hi) / 2
        keep = uniform(widths, mid, prunable=prunable, round_to=round_to) if mid > 0 else widths.copy()
        if measure(keep) <= target:
            best, hi = keep, mid
        else:
            lo = mid
    return best
