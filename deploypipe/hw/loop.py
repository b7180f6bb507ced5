"""The measure-and-correct loop: allocate from the table, build the pruned model, measure
it on the target, correct the table's scale, allocate again.

Latency does not depend on the weights, so each round shrinks the dense ONNX graph
(exact surgery, no training) and times it interleaved with the dense model. A ratio budget
is taken against the *median* of every dense measurement so far (two before round 1, one
per round), not the round's own: single dense measurements are outliers on a shared
machine while the pruned model timed beside them is not (mobilenet_v2 at batch 1, ten
interleaved pairs: dense 1.85-2.39 ms, pruned 0.79-0.87 ms; one round's dense of 2.48 ms
against 1.43-1.51 ms in the others once made a 0.3 budget 1.7x too loose).

Round 1 trusts the table (scale 1). The scale multiplies the table's latency changes: each
later round multiplies it by the last round's measured / predicted saving (dense minus
pruned, measured against predicted; at most 4x either way), so a table that over-promises
is corrected where it is wrong while the dense latency stays measured.
The scale is kept strictly inside the bracket of scales already seen to give a model
slower than the budget and more than ``tolerance`` under it, so a model error that changes
with the allocation cannot make the loop oscillate; widths a round already measured are
never measured again (the bracket is bisected instead). Allocations aim at the middle of
the window ``[(1 - tolerance) * budget, budget]``. The loop stops when a measurement lands
in the window, or after ``rounds`` rounds; the result is the round that came closest from
below the final budget (or, if none met it, the fastest one).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..errors import BudgetError
from ..graph import Analysis, shrink
from ..prune.allocate import select_drop
from ..prune.budget import Budget
from ..targets import TargetProfile
from ..utils.log import get_logger
from .allocate import LatencyAllocator
from .subgraph import with_batch
from .timer import Timer

log = get_logger("hw")

# One round changes the scale at most this factor either way: a model measured as slow as
# dense (no saving at all) once cut the scale 20x and the next allocation pruned resnet50
# to 1.6% of its MACs; the bracket of seen scales narrows from there instead.
MAX_STEP = 0.25


@dataclass(frozen=True)
class LoopRound:
    round: int
    scale: float  # the table's correction in force when this round allocated
    budget_ms: float  # this round's budget (a ratio budget: against dense_ms)
    predicted_ms: float  # the scaled table's prediction for this round's widths
    measured_ms: float
    dense_ms: float  # the dense latency this round used: the median of the dense measurements so far
    widths: tuple[int, ...]
    macs: float
    note: str = ""
    dense_round_ms: float | None = None  # the dense model timed beside this round's model

    @property
    def error(self) -> float:
        """Prediction error relative to the measurement: (predicted - measured) / measured."""
        return (self.predicted_ms - self.measured_ms) / self.measured_ms

    @property
    def next_scale(self) -> float:
        """The scale times measured / predicted saving: the next round's scale."""
        predicted = self.dense_ms - self.predicted_ms
        if predicted <= 1e-9 * self.dense_ms:
            return self.scale
        measured = max(self.dense_ms - self.measured_ms, MAX_STEP * predicted)
        return self.scale * min(measured / predicted, 1 / MAX_STEP)

    def to_dict(self) -> dict[str, Any]:
        return {"round": self.round, "predicted_ms": self.predicted_ms, "measured_ms": self.measured_ms,
                "error": self.error, "scale": self.scale, "budget_ms": self.budget_ms,
                "dense_ms": self.dense_ms, "dense_round_ms": self.dense_round_ms,
                "ratio": self.measured_ms / self.dense_ms,
                "macs": self.macs, "widths": list(self.widths), "note": self.note}


@dataclass(frozen=True)
class LoopResult:
    rounds: tuple[LoopRound, ...]
    best: int  # index into rounds
    tolerance: float
    allocator: LatencyAllocator  # calibrated: reproduces the best round's allocation
    dense_ms: float  # the median of every dense measurement of the loop
    budget_ms: float  # the budget against that dense latency: what the verdict is on

    @property
    def chosen(self) -> LoopRound:
        return self.rounds[self.best]

    @property
    def met(self) -> bool:
        return self.chosen.measured_ms <= self.budget_ms

    @property
    def within(self) -> bool:
        return self.met and self.chosen.measured_ms >= (1 - self.tolerance) * self.budget_ms

    def sentence(self) -> str:
        c = self.chosen
        gap = (c.measured_ms - self.budget_ms) / self.budget_ms
        verdict = "met" if self.met else "missed"
        return (f"latency budget {verdict} in round {c.round} of {len(self.rounds)}: measured "
                f"{c.measured_ms:.4g} ms for a budget of {self.budget_ms:.4g} ms ({gap:+.1%}, dense "
                f"{self.dense_ms:.4g} ms, {self.dense_ms / c.measured_ms:.2f}x faster)")

    def to_dict(self) -> dict[str, Any]:
        return {"met": self.met, "within_tolerance": self.within, "tolerance": self.tolerance,
                "chosen_round": self.chosen.round, "budget_ms": self.budget_ms,
                "measured_ms": self.chosen.measured_ms, "dense_ms": self.dense_ms,
                "scale": self.chosen.scale, "sentence": self.sentence()}


@dataclass
class _Search:
    """The rounds so far and the bracket of scales known to give too slow / too fast models
    (a larger scale promises more per channel removed, so it prunes less)."""

    tolerance: float
    rounds: list[LoopRound] = dataclasses.field(default_factory=list)
    upper: float = math.inf  # smallest scale whose model was slower than the budget
    lower: float = 0.0  # largest scale whose model was more than tolerance under it

    def record(self, r: LoopRound, *, bracket: bool = True) -> None:
        """Keep ``r``; ``bracket=False`` for a round whose widths did not come from its scale."""
        self.rounds.append(r)
        if bracket:
            self.learn(r.scale, r.measured_ms, r.budget_ms)

    def learn(self, scale: float, measured_ms: float, budget_ms: float) -> bool:
        """Narrow the bracket with a model of ``scale`` measured at ``measured_ms``; False
        when that model landed in the window (nothing to narrow)."""
        if measured_ms > budget_ms:
            self.upper = min(self.upper, scale)
        elif measured_ms < (1 - self.tolerance) * budget_ms:
            self.lower = max(self.lower, scale)
        else:
            return False
        return True

    def done(self) -> bool:
        r = self.rounds[-1]
        return (1 - self.tolerance) * r.budget_ms <= r.measured_ms <= r.budget_ms

    def next_scale(self) -> float:
        return self.inside(self.rounds[-1].next_scale)

    def inside(self, s: float) -> float:
        """``s`` if strictly inside the bracket, else its geometric middle (or a step out of
        the one known end)."""
        lo, hi = self.lower, self.upper
        if lo < s < hi:
            return s
        if math.isfinite(hi) and lo > 0:
            return math.sqrt(lo * hi)
        step = 1 + self.tolerance
        return lo * step if s <= lo else hi / step

    def any_met(self) -> bool:
        return any(r.measured_ms <= r.budget_ms for r in self.rounds)

    def best(self, budget_ms: float) -> int:
        """The round closest under ``budget_ms`` (the fastest one if none is under it)."""
        feasible = [i for i, r in enumerate(self.rounds) if r.measured_ms <= budget_ms]
        if feasible:
            return max(feasible, key=lambda i: self.rounds[i].measured_ms)
        return min(range(len(self.rounds)), key=lambda i: self.rounds[i].measured_ms)


def latency_loop(analysis: Analysis, scores: Sequence[np.ndarray], prunable: Sequence[bool],
                 allocator: LatencyAllocator, budget: Budget, target: TargetProfile, timer: Timer, *,
                 rounds: int = 8, tolerance: float = 0.05) -> LoopResult:
    """Calibrate ``allocator`` on the target until a measured pruned model meets ``budget``."""
    widths = analysis.widths()
    dense = with_batch(analysis.model, target.batch, target.input_shape)
    run = _Runner(analysis, scores, target, timer, dense)
    run.dense_ms.extend(timer.time([dense, dense]))
    alloc = dataclasses.replace(allocator, dense_ms=run.reference(), scale=1.0, aim=1 - tolerance / 2)
    search = _Search(tolerance)
    used: list[LatencyAllocator] = []  # the allocator of each round, to reproduce the chosen one
    if _check_reachable(alloc, widths, prunable, budget, run, search):
        used.append(dataclasses.replace(alloc, fastest_fits=True))
    while len(search.rounds) < rounds and not (search.rounds and search.done()):
        if search.rounds:
            alloc = dataclasses.replace(alloc, scale=search.next_scale(), dense_ms=run.reference(),
                                        fastest_fits=False)
        try:
            keep, note = alloc.keep(widths, scores, prunable, alloc.budget_ms(budget)), ""
            keep, alloc = _unmeasured(keep, alloc, widths, scores, prunable, budget, search, run)
        except BudgetError:  # the corrected table puts the budget out of reach: the fastest is closest
            keep, note = alloc.fastest(widths, prunable), "fastest allowed widths"
            alloc = dataclasses.replace(alloc, fastest_fits=True)
        used.append(alloc)
        last = run.round(len(search.rounds) + 1, keep, alloc, budget, note)
        search.record(last)
        log.info("latency round %d: predicted %.4g ms, measured %.4g ms (budget %.4g ms)",
                 last.round, last.predicted_ms, last.measured_ms, last.budget_ms)
        if alloc.fastest_fits and last.measured_ms > last.budget_ms:
            if not search.any_met():
                raise _out_of_reach(last, target)
            break  # the fastest widths missed where an earlier round met: noise, keep that round
    dense_ms = run.reference()
    final_ms = budget.target(dense_ms)
    best = search.best(final_ms)
    return LoopResult(tuple(search.rounds), best, tolerance, used[best], dense_ms, final_ms)


SEARCH_TRIES = 12  # allocations tried (no measuring) for widths that no round has measured


def _unmeasured(keep: np.ndarray, alloc: LatencyAllocator, widths, scores, prunable, budget: Budget,
                search: _Search, run: "_Runner") -> tuple[np.ndarray, LatencyAllocator]:
    """Widths an earlier round measured teach nothing: their scale counts as that round's
    outcome (too slow or too fast), the bracket is bisected and the allocation tried again.
    Without this, two allocations either side of a step in the latency (a 1-ms model at
    batch 1: 0.47 ms and 0.73 ms, nothing measured between) took turns until the rounds ran out."""
    for _ in range(SEARCH_TRIES):
        known = run.seen.get(_key(keep))
        if known is None or not search.learn(alloc.scale, known, budget.target(run.reference())):
            break
        candidate = dataclasses.replace(alloc, scale=search.inside(alloc.scale))
        try:
            keep, alloc = candidate.keep(widths, scores, prunable, candidate.budget_ms(budget)), candidate
        except BudgetError:
            break
    return keep, alloc


def _check_reachable(alloc: LatencyAllocator, widths, prunable, budget: Budget, run: "_Runner",
                     search: _Search) -> bool:
    """A budget the table says is out of reach: measure the fastest model to be sure
    (True when it did, and the fastest model met the budget: a round)."""
    fastest = alloc.fastest(widths, prunable)
    if alloc.predict(fastest) <= alloc.budget_ms(budget):
        return False
    r = run.round(1, fastest, alloc, budget, note="fastest allowed widths (the table predicted the budget "
                  "out of reach)")
    if r.measured_ms > r.budget_ms:
        raise _out_of_reach(r, run.target)
    search.record(r, bracket=False)
    return True


def _out_of_reach(r: LoopRound, target: TargetProfile) -> BudgetError:
    """The measured fastest model is slower than the budget: one sentence with the number."""
    ratio = math.ceil(100 * r.measured_ms / r.dense_ms) / 100
    return BudgetError(f"the latency budget of {r.budget_ms:.4g} ms is below the fastest achievable "
                       f"{r.measured_ms:.4g} ms (measured on {target.name}, every prunable group at its "
                       "smallest allowed width)",
                       hint=f"ask for at least {r.measured_ms:.4g} ms (--latency-ratio {ratio:.2f}), "
                       "or allow more pruning per group with --max-ratio")


def _key(widths: Sequence[int]) -> tuple[int, ...]:
    """Widths as the key of the measurements already taken."""
    return tuple(int(w) for w in widths)


@dataclass
class _Runner:
    """Builds one round's pruned model and measures it beside the dense one."""

    analysis: Analysis
    scores: Sequence[np.ndarray]
    target: TargetProfile
    timer: Timer
    dense: Any
    seen: dict = dataclasses.field(default_factory=dict)  # widths -> measured ms
    dense_ms: list = dataclasses.field(default_factory=list)  # every dense measurement

    def reference(self) -> float:
        """The dense latency: the median of its measurements so far."""
        return float(np.median(self.dense_ms))

    def round(self, index: int, keep: np.ndarray, alloc: LatencyAllocator, budget: Budget,
              note: str = "") -> LoopRound:
        key, dense_round = _key(keep), None
        if key in self.seen:  # the same widths again: their measurement is known
            measured = self.seen[key]
            note = note or "same widths as an earlier round (not measured again)"
        else:
            model = shrink(self.analysis, select_drop(self.scores, keep))
            dense_round, measured = self.timer.time([self.dense, with_batch(model, self.target.batch,
                                                                            self.target.input_shape)])
            self.seen[key] = measured
            self.dense_ms.append(dense_round)
        dense_ms = self.reference()
        now = dataclasses.replace(alloc, dense_ms=dense_ms)
        return LoopRound(index, alloc.scale, budget.target(dense_ms), now.predict(keep), measured, dense_ms,
                         key, float(self.analysis.cost.macs(keep)), note, dense_round)
