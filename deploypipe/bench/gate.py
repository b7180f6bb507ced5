"""The regression gate: is a case slower than the threshold *and* than the measured noise?

Each run times every case in ``repeats`` interleaved rounds; a round gives one value of the
gate's statistic (median, p90 or p99 of that round's iterations). For a case the gate takes
the ratio of the medians over rounds, current / baseline, with a percentile-bootstrap
interval that resamples the rounds of both runs. Rounds, not iterations, are resampled
because iterations of one round share the machine's state and are not independent.

Rounds within one run cannot show how the machine as a whole differed between the two runs
(on a shared machine: whether neighbours were busy). Two measurements cover that:

* **drift**: a fixed reference model is timed in every round of both runs; its ratio ``d``
  says how much slower the machine itself was. Models do not all feel it alike
  (memory-bound ones more), so the gate allows ``d ** drift_factor`` for it.
* **fastest iterations**: a real slowdown moves the whole distribution, including each
  round's fastest iteration; other processes preempting ours make iterations slower but
  leave some fast. With ``confirm_fastest`` a regression must also show in the ratio of the
  rounds' fastest iterations.

With ``L = 1 + max_slowdown`` and ``up = max(1, d) ** k``, ``down = max(1, 1/d) ** k``:

* **regression**: the interval's low end > ``L * up`` (and so is the fastest iterations')
* **ok**: the interval's high end * ``down`` <= ``L`` (``faster`` when it is below ``1/L``)
* **inconclusive** otherwise, with the reason: the interval straddles the threshold, the
  machine drifted enough to fake or hide a slowdown, or only the slow iterations moved.

The defaults (``drift_factor`` 2, ``confirm_fastest``) come from identical and slowed runs
on a 2-core shared machine (tools/bench_gate_noise.py, benchmarks/results/).
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
class Verdict:
    """The gate's judgement of one case."""

    case: str
    status: str
    reason: str
    ratio: Interval | None = None
    baseline_ms: float | None = None
    current_ms: float | None = None
    fastest: Interval | None = None  # the ratio of the rounds' fastest iterations

    def to_dict(self) -> dict[str, object]:
        return {"case": self.case, "status": self.status, "reason": self.reason,
                "ratio": self.ratio.to_dict() if self.ratio else None,
                "fastestRatio": self.fastest.to_dict() if self.fastest else None,
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


def judge(case: str, baseline: Sequence[float], current: Sequence[float],
          settings: GateSettings, drift: Interval | None = None, *,
          fastest: tuple[Sequence[float], Sequence[float]] | None = None) -> Verdict:
    """The verdict for one case from its per-round values in both runs; ``fastest`` holds
    the rounds' fastest iterations (baseline, current) for ``confirm_fastest``."""
    few = min(len(baseline), len(current))
    if few < settings.min_repeats:
        return Verdict(case, INCONCLUSIVE, f"only {few} rounds; the gate needs "
                       f"{settings.min_repeats} in both runs to measure the noise")
    boot = dict(confidence=settings.confidence, resamples=settings.resamples)
    ratio = ratio_interval(baseline, current, seed=case_seed(case), **boot)
    fast = None
    if fastest is not None and settings.confirm_fastest:
        fast = ratio_interval(*fastest, seed=case_seed(case) + 1, **boot)
    status, reason = _classify(ratio, fast, settings, drift)
    return Verdict(case, status, reason, ratio, float(np.median(baseline)),
                   float(np.median(current)), fast)


def drift_allowances(drift: Interval | None, factor: float) -> tuple[float, float]:
    """(up, down): how much slower, or faster, the machine alone may have made a case."""
    if drift is None:
        return 1.0, 1.0
    return max(1.0, drift.estimate) ** factor, max(1.0, 1.0 / drift.estimate) ** factor


def _classify(r: Interval, fast: Interval | None, s: GateSettings,
              drift: Interval | None) -> tuple[str, str]:
    up, down = drift_allowances(drift, s.drift_factor)
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
        return INCONCLUSIVE, (f"slower, but the machine itself was {_pct(drift.estimate)} % "
                              "slower than at the baseline (reference model); rerun on a "
                              "quieter machine")
    if r.high <= s.limit:
        return INCONCLUSIVE, (f"within the threshold, but the machine was "
                              f"{_pct(drift.estimate)} % faster than at the baseline "
                              "(reference model), which could hide a slowdown")
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
