"""The regression gate: is a case slower than the threshold *and* than the measured noise?

Each run times every case in ``repeats`` interleaved rounds; a round gives one value of the
gate's statistic (median, p90 or p99 of that round's iterations). For a case the gate takes
the ratio of the medians over rounds, current / baseline, with a percentile-bootstrap
interval that resamples the rounds of both runs. Rounds, not iterations, are resampled
because iterations of one round share the machine's state and are not independent.

Rounds within one run cannot show how the machine as a whole differed between the two runs
(on a shared machine: whether neighbours were busy, preempting us or sharing the caches).
Three measurements cover that:

* **machine drift** ``d``: a fixed reference model is timed in every round of both runs;
  its ratio says how much slower the machine itself was.
* **spread drift** ``q``: each round's median over its fastest iteration, per case, current
  over baseline. Competing processes spread a case's iterations out (some preempted, some
  not); a slower model moves them all alike. It catches contention that the small
  reference does not feel (a model with megabytes of weights suffers from a neighbour
  that thrashes the caches, the reference does not).
* **fastest iterations**: with ``confirm_fastest`` a regression must also show in the
  ratio of the rounds' fastest iterations, which other processes slow down least.

Models feel contention unequally, so the gate allows ``max(d, q) ** drift_factor``. With
``L = 1 + max_slowdown``, ``up = max(1, d, q) ** k`` and ``down = max(1, 1/d, 1/q) ** k``:

* **regression**: the interval's low end > ``L * up`` (and so is the fastest iterations')
* **ok**: the interval's high end * ``down`` <= ``L`` (``faster`` when it is below ``1/L``)
* **inconclusive** otherwise, with the reason: the interval straddles the threshold, the
  machine was busier (or quieter) than at the baseline, or only the slow iterations moved.

The defaults (``drift_factor`` 2, ``confirm_fastest``) are the ones under which no pair of
identical runs on a shared machine failed; the runs are in
benchmarks/results/bench_gate_noise.json (tools/bench_gate_noise.py).
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

OK, FASTER, REGRESSION, INCONCLUSIVE = "ok", "faster", "regression", "inconclusive"
NEW, MISSING = "new", "missing"


@dataclass(frozen=True)
class GateSettings:
    """How cases are judged; ``max_slowdown`` and ``drift_factor`` are explained above."""

    statistic: str = "median"
    max_slowdown: float = 0.10
    confidence: float = 0.95
    drift_factor: float = 2.0
    confirm_fastest: bool = True
    reference: bool = True
    resamples: int = 2000
    min_repeats: int = 3

    @property
    def limit(self) -> float:
        return 1.0 + self.max_slowdown


@dataclass(frozen=True)
class Interval:
    """A ratio (current / baseline) and its bootstrap confidence interval."""

    estimate: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        return {"ratio": self.estimate, "low": self.low, "high": self.high}

    def percent(self) -> str:
        """``+12.3 % [+5.1, +20.0]``"""
        return f"{_pct(self.estimate)} % [{_pct(self.low)}, {_pct(self.high)}]"


@dataclass(frozen=True)
class CaseRounds:
    """One case's rounds in one run: the gate's statistic, the median and the fastest
    iteration of each round (ms)."""

    values: tuple[float, ...]
    medians: tuple[float, ...] = ()
    fastest: tuple[float, ...] = ()

    @property
    def spread(self) -> float | None:
        """The median over rounds of (round median / round's fastest iteration)."""
        if not self.medians or len(self.medians) != len(self.fastest):
            return None
        return float(np.median(np.asarray(self.medians) / np.asarray(self.fastest)))


@dataclass(frozen=True)
class Verdict:
    """The gate's judgement of one case."""

    case: str
    status: str
    reason: str
    ratio: Interval | None = None
    baseline_ms: float | None = None
    current_ms: float | None = None
    fastest: Interval | None = None  # the ratio of the rounds' fastest iterations
    spread_drift: float | None = None  # q: how much more spread out the iterations were

    def to_dict(self) -> dict[str, object]:
        return {"case": self.case, "status": self.status, "reason": self.reason,
                "ratio": self.ratio.to_dict() if self.ratio else None,
                "fastestRatio": self.fastest.to_dict() if self.fastest else None,
                "spreadDrift": self.spread_drift,
                "baselineMs": self.baseline_ms, "currentMs": self.current_ms}


def ratio_interval(baseline: Sequence[float], current: Sequence[float], *, confidence: float,
                   resamples: int, seed: int) -> Interval:
    """Ratio of medians (current / baseline) with a percentile-bootstrap interval over the
    rounds of both runs, resampled independently; seeded, so the verdict is repeatable."""
    b, c = _positive(baseline), _positive(current)
    rng = np.random.default_rng(seed)
    boot_b = np.median(b[rng.integers(0, b.size, (resamples, b.size))], axis=1)
    boot_c = np.median(c[rng.integers(0, c.size, (resamples, c.size))], axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(boot_c / boot_b, [tail, 1.0 - tail])
    return Interval(float(np.median(c) / np.median(b)), float(low), float(high))


def judge(case: str, baseline: CaseRounds, current: CaseRounds, settings: GateSettings,
          drift: Interval | None = None) -> Verdict:
    """The verdict for one case from its rounds in both runs; ``drift`` is the reference
    model's ratio (current / baseline), ``None`` where it was not measured."""
    few = min(len(baseline.values), len(current.values))
    if few < settings.min_repeats:
        return Verdict(case, INCONCLUSIVE, f"only {few} rounds; the gate needs "
                       f"{settings.min_repeats} in both runs to measure the noise")
    boot = dict(confidence=settings.confidence, resamples=settings.resamples)
    ratio = ratio_interval(baseline.values, current.values, seed=case_seed(case), **boot)
    fast = None
    if settings.confirm_fastest and baseline.fastest and current.fastest:
        fast = ratio_interval(baseline.fastest, current.fastest, seed=case_seed(case) + 1, **boot)
    q = None
    if baseline.spread and current.spread:
        q = current.spread / baseline.spread
    status, reason = _classify(ratio, fast, settings, Drift(drift.estimate if drift else None, q))
    return Verdict(case, status, reason, ratio, float(np.median(baseline.values)),
                   float(np.median(current.values)), fast, q)


@dataclass(frozen=True)
class Drift:
    """How much busier the machine was now than at the baseline: ``machine`` from the
    reference model, ``spread`` from the case's own iterations (ratios; None: unknown)."""

    machine: float | None = None
    spread: float | None = None

    def allowances(self, factor: float) -> tuple[float, float]:
        """(up, down): how much slower, or faster, the machine alone may have made a case."""
        ratios = [r for r in (self.machine, self.spread) if r]
        up = max([1.0, *ratios]) ** factor
        down = max([1.0, *(1.0 / r for r in ratios)]) ** factor
        return up, down

    def explain(self) -> str:
        """The larger of the two drifts, in words."""
        m, q = self.machine or 1.0, self.spread or 1.0
        if _size(m) >= _size(q):
            return (f"the machine was {_size(m):.1f} % {'slower' if m > 1 else 'faster'} than "
                    "at the baseline (reference model)")
        if q > 1:
            return (f"this case's iterations were {_size(q):.1f} % more spread out than at "
                    "the baseline (other processes competing)")
        return (f"this case's iterations were {_size(q):.1f} % more spread out at the "
                "baseline (a busier machine then)")


def _size(ratio: float) -> float:
    """How far a ratio is from 1, in percent, either way (1.25 and 0.8 are both 25 %)."""
    return 100.0 * (max(ratio, 1.0 / ratio) - 1.0)


def _classify(r: Interval, fast: Interval | None, s: GateSettings,
              drift: Drift) -> tuple[str, str]:
    up, down = drift.allowances(s.drift_factor)
    level = f"{100 * s.confidence:g} %"
    if r.low > s.limit * up:
        if fast is None or fast.low > s.limit * up:
            return REGRESSION, (f"slower than +{100 * s.max_slowdown:g} % beyond the noise "
                                f"(the {level} interval starts at {_pct(r.low)} %)")
        return INCONCLUSIVE, (f"slower in the {s.statistic} but not in the fastest "
                              f"iterations ({fast.percent()}), as when other processes "
                              "compete for the machine; rerun on a quieter machine")
    if r.high * down <= s.limit:
        if r.high < 1.0 / s.limit:
            return FASTER, f"faster than -{100 * (1 - 1 / s.limit):.3g} % beyond the noise"
        return OK, f"within +{100 * s.max_slowdown:g} % at {level} confidence"
    if r.low > s.limit:
        return INCONCLUSIVE, f"slower, but {drift.explain()}; rerun on a quieter machine"
    if r.high <= s.limit:
        return INCONCLUSIVE, (f"within the threshold, but {drift.explain()}, which could "
                              "hide a slowdown")
    return INCONCLUSIVE, (f"too noisy to judge: the {level} interval "
                          f"[{_pct(r.low)}, {_pct(r.high)}] % includes the "
                          f"+{100 * s.max_slowdown:g} % threshold")


def case_seed(case: str) -> int:
    """A stable per-case bootstrap seed (Python's ``hash`` of a str changes per process)."""
    return zlib.crc32(case.encode("utf-8"))


def _positive(values: Sequence[float]) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64)
    if a.ndim != 1 or a.size == 0 or not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise ValueError("latency values must be a non-empty list of positive numbers")
    return a


def _pct(ratio: float) -> str:
    if not math.isfinite(ratio):
        return "?"
    return f"{100 * (ratio - 1):+.1f}"
