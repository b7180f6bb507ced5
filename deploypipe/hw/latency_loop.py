"""The measure-and-correct loop: allocate from the table, build the pruned model, measure
it on the target, correct the table's scale, allocate again; the answer is an immutable
:class:`LoopResult` whose widths the build prunes to.

Latency does not depend on the weights, so each round shrinks the dense ONNX graph (exact
surgery, no training) and times it interleaved with the dense model; a ratio budget is taken
against the median of the last three dense measurements (one outlier cannot move it, the
machine's drift can). Round 1 trusts the table (scale 1); each later round multiplies the
scale by the last round's measured / predicted saving (at most 4x either way), kept strictly
inside the bracket of scales already seen too slow and too fast, so the loop cannot
oscillate; widths already measured are never measured again. Allocations aim at the middle
of the window ``[(1 - tolerance) * budget, budget]``.

Once one round measured too slow and another too fast, the next widths come from the walk
between two such models (:func:`walk`), not from a scale: near the narrowest widths the
target's latency has steps the isolated sub-graphs never showed. When the two models are one
step of one group apart, that group is held narrow and the knapsack re-allocates the others.

The loop stops when a measurement lands in the window, or after ``rounds`` rounds; the
result is the round that came closest under its own budget (or, if none met it, the one
relatively fastest). The runs that shaped these rules: ``benchmarks/results/latency_budget*.json``.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..errors import BudgetError
from ..graph import Analysis, shrink
from ..measure.stats import speed_phrase
from ..prune.allocate import select_drop
from ..prune.budget import Budget
from ..prune.state import GroupState
from ..targets import TargetProfile
from ..utils.locks import device_lock
from ..utils.log import get_logger
from .latency_allocator import Calibration, LatencyAllocator
from .subgraph import with_batch
from .timer import Timer

log = get_logger("hw")

# One round changes the scale at most this factor either way (one model measured as slow as
# dense would otherwise prune to almost nothing); the bracket of seen scales narrows from there.
MAX_STEP = 0.25


@dataclass(frozen=True)
class LoopRound:
    round: int
    scale: float  # the table's correction in force when this round allocated
    budget_ms: float  # this round's budget (a ratio budget: against dense_ms)
    predicted_ms: float  # the scaled table's prediction for this round's widths
    measured_ms: float
    dense_ms: float  # the dense latency this round used: the median of the last three dense measurements
    widths: tuple[int, ...]
    macs: float
    note: str = ""
    dense_round_ms: float | None = None  # the dense model timed beside this round's model

    @property
    def relative(self) -> float:
        """Measured latency over this round's budget."""
        return self.measured_ms / self.budget_ms

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


# Above this spread of the dense measurements a loop's verdict is flagged as approximate: loops
# whose dense varied more landed in the window far less often (benchmarks/results/latency_budget_repeat.json).
UNSTEADY = 1.1


def spread(values: Sequence[float]) -> float:
    """Slowest over fastest of ``values`` (1.0 for none): how steady the machine was."""
    return max(values) / min(values) if values else 1.0


@dataclass(frozen=True)
class LoopResult:
    """The loop's plan: the chosen round's widths (what the build prunes to), its measured
    latency against its own budget and dense latency, the verdict and every round."""

    rounds: tuple[LoopRound, ...]
    best: int  # index into rounds
    tolerance: float
    dense_ms: float  # the chosen round's dense latency (median of the last three measured)
    budget_ms: float  # the chosen round's budget: what the verdict is on
    dense_measured: tuple[float, ...] = ()  # the loop's dense measurements, in order, less those set aside
    dense_set_aside: tuple[float, ...] = ()  # dense measurements of pairs timed again in a busy moment

    @property
    def widths(self) -> tuple[int, ...]:
        """The kept width of every group (dense group ids)."""
        return self.chosen.widths

    @property
    def measured_ms(self) -> float:
        return self.chosen.measured_ms

    @property
    def dense_spread(self) -> float:
        """Slowest over fastest dense measurement: how steady the machine was (1.0: steady).
        A pair the loop timed again and set aside (a busy moment it caught) does not count: the
        retiming dealt with it, and its one outlier would make the verdict blame noise for a step."""
        return spread(self.dense_measured)

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
        unsteady = (f"; the dense model measured {self.dense_spread:.2f}x slower at worst than at best "
                    "during the loop (a busy machine), so the verdict is only that good"
                    if self.dense_spread > UNSTEADY else "")
        slow = [r.relative for r in self.rounds if r.relative > 1]
        short = ""
        if self.met and not self.within and slow:
            short = f"; no model measured between {c.relative:.2f} and {min(slow):.2f} of its budget"
            if self.dense_spread - 1 > self.tolerance:  # the noise alone is wider than the window
                short += (f", and the dense model's own measurements lay {self.dense_spread:.2f}x apart during the "
                          f"loop, wider than the {self.tolerance:.0%} window: the machine's timing noise, not the "
                          "allocation, kept the rounds out of it (time on a quieter machine or a one-thread "
                          "target such as cpu-batch32, or loosen --latency-tolerance)")
                unsteady = ""
            else:
                short += (": a step in the target's latency that the rounds did not split (more --latency-rounds, "
                          "or a looser --latency-tolerance)")
        return (f"latency budget {verdict} in round {c.round} of {len(self.rounds)}: measured "
                f"{c.measured_ms:.4g} ms for a budget of {self.budget_ms:.4g} ms ({gap:+.1%}, dense "
                f"{self.dense_ms:.4g} ms, {speed_phrase(self.dense_ms, c.measured_ms)}){short}{unsteady}")

    def to_dict(self) -> dict[str, Any]:
        return {"met": self.met, "within_tolerance": self.within, "tolerance": self.tolerance,
                "chosen_round": self.chosen.round, "budget_ms": self.budget_ms,
                "measured_ms": self.chosen.measured_ms, "dense_ms": self.dense_ms,
                "scale": self.chosen.scale, "dense_spread": self.dense_spread,
                "dense_set_aside": len(self.dense_set_aside), "sentence": self.sentence()}


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

    def pairs(self) -> list[tuple[LoopRound, LoopRound]]:
        """Every (too fast, too slow) pair of rounds, relative to each round's budget: the
        closest pair first (the slowest of the too fast against the fastest of the too slow)."""
        fast = [r for r in self.rounds if r.relative < 1 - self.tolerance]
        slow = [r for r in self.rounds if r.relative > 1]
        return sorted(((f, s) for f in fast for s in slow), key=lambda p: (p[1].relative - p[0].relative,
                                                                          -p[0].round, -p[1].round))

    def any_met(self) -> bool:
        return any(r.relative <= 1 for r in self.rounds)

    def best(self) -> int:
        """The round closest under its budget (the relatively fastest one if none is under)."""
        feasible = [i for i, r in enumerate(self.rounds) if r.relative <= 1]
        if feasible:
            return max(feasible, key=lambda i: self.rounds[i].relative)
        return min(range(len(self.rounds)), key=lambda i: self.rounds[i].relative)


def latency_loop(analysis: Analysis, scores: Sequence[np.ndarray], prunable: Sequence[bool],
                 allocator: LatencyAllocator, budget: Budget, target: TargetProfile, timer: Timer, *,
                 rounds: int = 8, tolerance: float = 0.05) -> LoopResult:
    """Measure pruned models of ``analysis`` on the target until one meets ``budget``
    (holding the target device, so another deploypipe run does not time beside it); the
    result's widths are the plan the build prunes to."""
    state = GroupState(analysis.widths(), scores, prunable)
    with device_lock(target.device):
        dense = with_batch(analysis.model, target.batch, target.input_shape)
        run = Runner(analysis, state.scores, target, timer, dense)
        run.dense_ms.extend(timer.time([dense, dense]))
        if spread(run.dense_ms) - 1 > tolerance:  # say so now, not after the rounds
            steadier = (" or a one-thread target such as cpu-batch32" if target.device == "cpu"
                        and target.threads != 1 else "")
            log.warning("the dense model timed %.2fx apart in its first two measurements on %s, wider than the "
                        "%.0f%% window: this machine's timing noise may keep the loop out of it (a quieter "
                        "machine%s repeats better)", spread(run.dense_ms), target.name, 100 * tolerance, steadier)
        loop = _Loop(allocator, state, budget, run, _Search(tolerance), Calibration(run.reference()))
        loop.measure(rounds)
    rounds_run, best = tuple(loop.search.rounds), loop.search.best()
    return LoopResult(rounds_run, best, tolerance, rounds_run[best].dense_ms, rounds_run[best].budget_ms,
                      run.steady(), run.set_aside_ms())


SEARCH_TRIES = 12  # allocations tried (no measuring) for widths that no round has measured
# A walk round aims at least this share of the way from either measured end (see _Loop.between):
# regula falsi through two measurements either side of a step would otherwise creep to it from one side.
WALK_CLAMP = 0.15


@dataclass
class _Loop:
    """One loop's state: the allocator, groups and budget it allocates for, the runner's
    measurements, the search's rounds and bracket, and the table's calibration in force."""

    alloc: LatencyAllocator
    state: GroupState  # the dense model's groups: every round allocates from them
    budget: Budget
    run: Runner
    search: _Search
    cal: Calibration

    @property
    def aim(self) -> float:
        """The share of the budget that allocations aim at: the middle of the window."""
        return 1 - self.search.tolerance / 2

    def budget_ms(self, cal: Calibration | None = None) -> float:
        return self.aim * self.budget.target((cal or self.cal).dense_ms)

    def measure(self, rounds: int) -> None:
        """Rounds until one lands in the window (or ``rounds`` are spent)."""
        search = self.search
        self.check_reachable()
        while len(search.rounds) < rounds and not (search.rounds and search.done()):
            if search.rounds:
                self.cal = Calibration(self.run.reference(), search.next_scale())
            keep, note, walked, fastest = self.propose()
            last = self.run.round(len(search.rounds) + 1, keep, self.alloc, self.cal, self.budget, note,
                                  confirm=fastest)
            search.record(last, bracket=not walked)
            log.info("latency round %d: predicted %.4g ms, measured %.4g ms (budget %.4g ms)",
                     last.round, last.predicted_ms, last.measured_ms, last.budget_ms)
            if fastest and last.measured_ms > last.budget_ms:
                if not search.any_met():
                    raise _out_of_reach(last, self.run.target, self.run.steady())
                break  # the fastest widths missed where an earlier round met: noise, keep that round

    def propose(self) -> tuple[np.ndarray, str, bool, bool]:
        """The next widths to measure, its note, whether they came from the walk between two
        measured models, and whether they are the fastest allowed widths."""
        walked = self.between()
        if walked is not None:  # measured models either side of the window: the table has had its say
            return (*walked, True, False)
        try:
            return self.unmeasured(self.alloc.keep(self.state, self.budget_ms(), self.cal)), "", False, False
        except BudgetError:  # the corrected table puts the budget out of reach: the fastest is closest
            return self.alloc.fastest(self.state), "fastest allowed widths", False, True

    def check_reachable(self) -> None:
        """A budget the table says is out of reach: measure the fastest model to be sure (a
        round when it meets the budget; refused when it does not)."""
        fastest = self.alloc.fastest(self.state)
        if self.alloc.predict(fastest, self.cal) <= self.budget_ms():
            return
        r = self.run.round(1, fastest, self.alloc, self.cal, self.budget, note="fastest allowed widths (the "
                           "table predicted the budget out of reach)", confirm=True)
        if r.measured_ms > r.budget_ms:
            raise _out_of_reach(r, self.run.target, self.run.steady())
        self.search.record(r, bracket=False)

    def unmeasured(self, keep: np.ndarray) -> np.ndarray:
        """Widths an earlier round measured teach nothing: their scale counts as that round's
        outcome (too slow or too fast), the bracket is bisected and the allocation tried again
        (two allocations either side of a step would otherwise take turns until the rounds ran out)."""
        for _ in range(SEARCH_TRIES):
            known = self.run.seen.get(_key(keep))
            if known is None or not self.search.learn(self.cal.scale, known[0], self.budget.target(known[1])):
                break
            cal = dataclasses.replace(self.cal, scale=self.search.inside(self.cal.scale))
            try:
                keep, self.cal = self.alloc.keep(self.state, self.budget_ms(cal), cal), cal
            except BudgetError:
                break
        return keep

    def between(self) -> tuple[np.ndarray, str] | None:
        """Once one round measured too slow and another too fast: on the walk between such a
        pair (closest pair first), the step where the straight line through the last model
        measured too fast and the first one measured too slow (each relative to its own
        round's budget) meets the aim. When no pair's walk has an unmeasured step left, the
        budget lies inside one step (see :meth:`beside`). None when nothing is left to try."""
        search, run, budget = self.search, self.run, self.budget
        first = None
        for fast, slow in search.pairs():
            path = walk(self.alloc, fast.widths, slow.widths, self.state, self.cal)
            rel = [run.relative(k, budget) for k in path]
            lo = max(i for i, r in enumerate(rel) if r is not None and r < 1 - search.tolerance)
            hi = min(i for i, r in enumerate(rel) if i > lo and r is not None and r > 1)
            first = first or (path, rel, lo, hi)
            steps = [i for i in range(lo + 1, hi) if rel[i] is None]
            if not steps:
                continue
            share = float(np.clip((self.aim - rel[lo]) / (rel[hi] - rel[lo]), WALK_CLAMP, 1 - WALK_CLAMP))
            position = _positions(self.alloc, path[lo:hi + 1], (rel[hi] - rel[lo]) * budget.target(self.cal.dense_ms),
                                  self.cal)
            i = min(steps, key=lambda j: (abs(position[j - lo] - share), j))
            return path[i], (f"between rounds {fast.round} and {slow.round}: {share:.0%} of the way between "
                             f"models measured {rel[lo]:.2f} and {rel[hi]:.2f} of their budgets")
        return None if first is None else self.beside(*first)

    def beside(self, path, rel, lo: int, hi: int) -> tuple[np.ndarray, str] | None:
        """The budget lies inside one step of the walk: ``path[lo]`` measured too fast, the next
        model ``path[hi]`` (one group wider) too slow. That group is held at its narrow width
        and the knapsack re-allocates the others, aiming where the line through the two best
        models measured with it narrow (measurement against prediction; one model: a slope of
        one) meets the aim. None if the answer was measured before (or the table finds nothing)."""
        narrow, wide = path[lo], path[hi]
        held = [g for g in range(len(narrow)) if narrow[g] != wide[g]]
        fast = [(r, self.alloc.predict(key, self.cal)) for key in self.run.seen
                if (r := self.run.relative(key, self.budget)) < self.aim and all(key[g] == narrow[g] for g in held)]
        (r1, p1), *rest = sorted(fast, reverse=True)
        slope = 1 / self.budget.target(self.cal.dense_ms)  # of the budget per ms of prediction
        if rest and p1 - rest[0][1] > 1e-9 * p1 and r1 > rest[0][0]:
            slope = (r1 - rest[0][0]) / (p1 - rest[0][1])
        cap = self.state.widths.copy()
        cap[held] = narrow[held]
        try:
            keep = self.alloc.keep(self.state.with_widths(cap), p1 + (self.aim - r1) / slope, self.cal)
        except BudgetError:
            return None
        if self.run.relative(keep, self.budget) is not None:
            return None
        which = ", ".join(f"group {g} at {narrow[g]} (not {wide[g]})" for g in held)
        return keep, (f"{which}: that step measured {rel[lo]:.2f} to {rel[hi]:.2f} of the budget; "
                      "the other groups re-allocated")


def _positions(alloc: LatencyAllocator, path, gap_ms: float, cal: Calibration) -> np.ndarray:
    """How far along ``path`` (0 to 1) each model is: by the table's prediction, weighed by
    the share of the measured gap ``gap_ms`` between the two ends that the table sees, the
    rest by step count (a table that predicts the two ends alike knows nothing about where
    along the walk the latency changes)."""
    steps = np.arange(len(path)) / max(len(path) - 1, 1)
    pred = np.array([alloc.predict(k, cal) for k in path])
    span = pred[-1] - pred[0]
    trust = float(np.clip(span / gap_ms, 0.0, 1.0)) if gap_ms > 0 else 0.0
    if trust <= 0:
        return steps
    return trust * (pred - pred[0]) / span + (1 - trust) * steps


def walk(alloc: LatencyAllocator, fast: Sequence[int], slow: Sequence[int], state: GroupState,
         cal: Calibration | None = None) -> list[np.ndarray]:
    """Widths from ``fast`` to ``slow`` one allowed width of one group at a time, the table's
    prediction climbing about steadily: a group that ``slow`` keeps wider widens while the
    prediction is under the straight line from one model's prediction to the other's, a group
    that ``slow`` keeps narrower is cut while it is over it (all cuts first made the start of
    the walk faster than the fast model). Widenings go in order of kept value per ms (the
    knapsack's greedy order), cuts in order of least value lost per ms saved. The options come
    from ``state``'s (dense) widths."""
    table = alloc.table
    cur = np.array(fast, dtype=np.int64)
    path = [cur.copy()]
    items = [g for g in alloc.items(state) if cur[g] != slow[g]]
    opts = {g: set(alloc.options(g, int(state.widths[g]))) | {int(slow[g])} for g in items}
    values = {g: alloc.value(state.scores[g], g) for g in items}
    downs = {g: sorted((o for o in opts[g] if slow[g] <= o < cur[g]), reverse=True) for g in items}
    ups = {g: sorted(o for o in opts[g] if cur[g] < o <= slow[g]) for g in items}

    def per_ms(g: int, w: int) -> float:
        """Value gained per ms spent moving group ``g`` to ``w`` (value lost per ms saved for a cut)."""
        dt = abs(table.latency(g, w) - table.latency(g, int(cur[g])))
        return abs(values[g][w - 1] - values[g][int(cur[g]) - 1]) / max(dt, 1e-12)

    start, end = alloc.predict(fast, cal), alloc.predict(slow, cal)
    total = sum(map(len, downs.values())) + sum(map(len, ups.values()))
    while len(path) <= total:
        line = start + (end - start) * len(path) / total
        if any(ups.values()) and (not any(downs.values()) or alloc.predict(cur, cal) <= line):
            g = max((g for g in items if ups[g]), key=lambda g: (per_ms(g, ups[g][0]), -g))
            cur[g] = ups[g].pop(0)
        else:
            g = min((g for g in items if downs[g]), key=lambda g: (per_ms(g, downs[g][0]), g))
            cur[g] = downs[g].pop(0)
        path.append(cur.copy())
    return path


def _out_of_reach(r: LoopRound, target: TargetProfile, dense_measured: Sequence[float] = ()) -> BudgetError:
    """The measured fastest model is slower than the budget: one sentence with the number, and
    the dense model's spread where the machine was too busy for the number to hold."""
    ratio = math.ceil(100 * r.measured_ms / r.dense_ms) / 100
    apart = spread(dense_measured)
    busy = (f"; the dense model's own measurements lay {apart:.2f}x apart meanwhile (a busy machine), so a "
            "quieter one may reach it" if apart > UNSTEADY else "")
    error = BudgetError(f"the latency budget of {r.budget_ms:.4g} ms is below the fastest achievable "
                        f"{r.measured_ms:.4g} ms (measured on {target.name}, the median of three pairs, "
                        f"every prunable group at its smallest allowed width){busy}",
                        hint=f"ask for at least {r.measured_ms:.4g} ms (--latency-ratio {ratio:.2f}), "
                        "or allow more pruning per group with --max-ratio")
    error.fastest = (r.measured_ms, r.dense_ms)  # type: ignore[attr-defined]  # for callers that convert
    return error


def _key(widths: Sequence[int]) -> tuple[int, ...]:
    """Widths as the key of the measurements already taken."""
    return tuple(int(w) for w in widths)


RECENT = 3  # dense measurements a budget is taken against: one outlier cannot move it, drift can
# A pair whose dense measurement is this far off the reference is timed again and the pair whose
# dense is nearer the reference is kept: it was timed in a busy moment. Both dense measurements count
# toward the reference; the pair not kept is set aside from the loop's spread (Runner.steady).
RETIME = 0.1


@dataclass
class Runner:
    """Builds pruned models and measures each beside the dense one, once per widths (three
    times for the fastest widths when they miss: see :meth:`round`; the loop's rounds, and
    the benchmark's baselines measure the same way)."""

    analysis: Analysis
    scores: Sequence[np.ndarray]
    target: TargetProfile
    timer: Timer
    dense: Any
    # widths -> (measured ms, the dense ms of that time): judged later against the dense of
    # their own time, not of the later round's (the machine drifts)
    seen: dict = dataclasses.field(default_factory=dict)
    dense_ms: list = dataclasses.field(default_factory=list)  # every dense measurement
    set_aside: set = dataclasses.field(default_factory=set)  # indices into dense_ms of pairs not kept
    confirmed: set = dataclasses.field(default_factory=set)  # widths timed in three pairs (see again)

    def relative(self, keep: Sequence[int], budget: Budget) -> float | None:
        """Measured latency of ``keep`` over the budget of its time, None if never measured."""
        known = self.seen.get(_key(keep))
        return None if known is None else known[0] / budget.target(known[1])

    def steady(self) -> tuple[float, ...]:
        """The dense measurements less those of pairs set aside as timed in a busy moment."""
        return tuple(ms for i, ms in enumerate(self.dense_ms) if i not in self.set_aside)

    def set_aside_ms(self) -> tuple[float, ...]:
        return tuple(self.dense_ms[i] for i in sorted(self.set_aside))

    def reference(self) -> float:
        """The dense latency now: the median of its last :data:`RECENT` measurements."""
        return float(np.median(self.dense_ms[-RECENT:]))

    def model_at(self, keep: Sequence[int]) -> Any:
        """The dense graph shrunk to ``keep`` (channels kept by score), at the target's batch."""
        model = shrink(self.analysis, select_drop(self.scores, keep))
        return with_batch(model, self.target.batch, self.target.input_shape)

    def measure(self, keep: Sequence[int]) -> tuple[float, float, float | None]:
        """(pruned ms, the dense reference of that time, the dense ms timed beside it or None
        when these widths were measured before and are not measured again)."""
        key = _key(keep)
        if key in self.seen:
            return (*self.seen[key], None)
        model = self.model_at(keep)
        pair = tuple(self.timer.time([self.dense, model]))
        if self.dense_ms and abs(pair[0] / self.reference() - 1) > RETIME:  # timed in a busy moment?
            reference = self.reference()
            again = tuple(self.timer.time([self.dense, model]))
            self.dense_ms.extend((pair[0], again[0]))
            kept = min((pair, again), key=lambda p: abs(p[0] / reference - 1))
            self.set_aside.add(len(self.dense_ms) - (1 if kept is pair else 2))
            pair = kept
        else:
            self.dense_ms.append(pair[0])
        dense_round, measured = pair
        self.seen[key] = (measured, self.reference())
        return (*self.seen[key], dense_round)

    def again(self, keep: Sequence[int]) -> None:
        """Time ``keep`` beside the dense model in two more pairs: its measurement becomes the
        median of the three pairs' pruned/dense ratios (one busy moment cannot decide it),
        against the dense reference of now."""
        key = _key(keep)
        ms, reference = self.seen[key]
        model, ratios = self.model_at(keep), [ms / reference]
        for _ in range(2):
            dense, pruned = self.timer.time([self.dense, model])
            self.dense_ms.append(dense)
            ratios.append(pruned / self.reference())
        now = self.reference()
        self.seen[key] = (float(np.median(ratios)) * now, now)
        self.confirmed.add(key)

    def round(self, index: int, keep: np.ndarray, alloc: LatencyAllocator, cal: Calibration, budget: Budget,
              note: str = "", *, confirm: bool = False) -> LoopRound:
        """Measure ``keep`` as round ``index``, predicted under ``cal`` (its scale) at the dense
        latency of its time. ``confirm``: a model that misses the budget is timed in three pairs
        before the verdict (the fastest widths: one busy pair must not refuse the budget)."""
        measured, dense_ms, dense_round = self.measure(keep)
        if confirm and _key(keep) not in self.confirmed and measured > budget.target(dense_ms):
            self.again(keep)
            measured, dense_ms = self.seen[_key(keep)]
            note += " (timed three times: the first pair missed the budget; the median counts)"
        if dense_round is None:
            note = note or "same widths as an earlier round (not measured again)"
        now = Calibration(dense_ms, cal.scale)
        return LoopRound(index, cal.scale, budget.target(dense_ms), alloc.predict(keep, now), measured, dense_ms,
                         _key(keep), float(self.analysis.cost.macs(keep)), note, dense_round)
