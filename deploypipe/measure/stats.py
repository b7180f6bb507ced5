"""Summary statistics of repeated latency measurements.

Percentiles use linear interpolation between order statistics (numpy's default); the
standard deviation is the population one, as trtexec's "coefficient of variance" uses.
``to_dict`` spells fields as trtexec's JSON exports do where they overlap
(``count``, ``averageMs``, ``medianMs``) and keeps the same ``...Ms`` style elsewhere.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Sequence

from ..errors import InputError

STATISTICS = ("mean", "median", "p90", "p95", "p99")


@dataclass(frozen=True)
class LatencyStats:
    """Latency of ``n`` timed iterations in milliseconds; ``throughput`` in inferences/s."""

    n: int
    batch: int
    mean: float
    median: float
    min: float
    max: float
    p90: float
    p95: float
    p99: float
    std: float
    cv: float  # std / mean, a fraction (0.02 = 2 %)
    throughput: float  # batch * 1000 / median

    @classmethod
    def from_samples(cls, samples_ms: Sequence[float], *, batch: int = 1) -> "LatencyStats":
        """Summarise per-iteration times (ms) of runs that each processed ``batch`` inputs."""
        xs = sorted(float(x) for x in samples_ms)
        if not xs:
            raise InputError("no latency samples to summarise", hint="run at least one iteration")
        if batch <= 0:
            raise InputError(f"batch must be positive, got {batch}")
        n = len(xs)
        mean = math.fsum(xs) / n
        std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / n)
        median = percentile(xs, 50.0)
        return cls(
            n=n, batch=batch, mean=mean, median=median, min=xs[0], max=xs[-1],
            p90=percentile(xs, 90.0), p95=percentile(xs, 95.0), p99=percentile(xs, 99.0),
            std=std, cv=std / mean if mean > 0 else 0.0,
            throughput=batch * 1000.0 / median if median > 0 else math.inf,
        )

    def statistic(self, name: str) -> float:
        """The value a target profile asks for: ``median``, ``p90``, ``p99``, ..."""
        if name not in STATISTICS:
            raise InputError(f"unknown latency statistic {name!r}",
                             hint=f"choose one of: {', '.join(STATISTICS)}")
        return float(getattr(self, name))

    def to_dict(self) -> dict[str, float | int]:
        return {
            "count": self.n,
            "batch": self.batch,
            "averageMs": self.mean,
            "medianMs": self.median,
            "minMs": self.min,
            "maxMs": self.max,
            "percentile90Ms": self.p90,
            "percentile95Ms": self.p95,
            "percentile99Ms": self.p99,
            "stdMs": self.std,
            "cv": self.cv,
            "throughput": self.throughput,
        }


def percentile(sorted_xs: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of already sorted values, linearly interpolated."""
    if not sorted_xs:
        raise InputError("no values to take a percentile of")
    pos = (len(sorted_xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_xs) - 1)
    frac = pos - lo
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * frac


def speed_phrase(before_ms: float, after_ms: float) -> str:
    """``before`` against ``after`` in words a reader cannot misread: "1.61x faster",
    "1.22x slower" (never "0.82x faster"), or "as fast" within half a percent."""
    if before_ms <= 0 or after_ms <= 0:
        return "—"
    ratio = before_ms / after_ms
    if abs(ratio - 1.0) < 0.005:
        return "as fast"
    return f"{ratio:.2f}x faster" if ratio > 1 else f"{1 / ratio:.2f}x slower"


#: Speed ratios within this of 1 count as the same speed: the interval covers the noise within one
#: run, and identical builds of a 0.1-ms model on our 2-core machine, each timed interleaved,
#: disagreed by about this much (``default_cpu`` in benchmarks/results/readme_examples.json).
#: A target profile's ``same_speed_margin`` sets it for builds on that target.
SAME_SPEED_MARGIN = 0.03


def median_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float] | None:
    """A distribution-free interval for the median of ``values``: the k-th smallest and k-th largest,
    k the largest with P(Binomial(n, 1/2) < k) <= (1 - confidence) / 2 (the sign test's interval);
    returns (low, high, its exact coverage), or None when n is too small for that confidence
    (n < 6 at 95%)."""
    n, tail = len(values), (1.0 - confidence) / 2.0
    below, k = 0.0, 0  # below: P(X < k+1) as k grows
    while k < n // 2:
        below += math.comb(n, k) / 2.0 ** n
        if below > tail:
            break
        k += 1
    if k == 0:
        return None
    xs = sorted(values)
    miss = sum(math.comb(n, i) for i in range(k)) / 2.0 ** n
    return xs[k - 1], xs[n - k], 1.0 - 2.0 * miss


def paired_speedup(before: Sequence[float], after: Sequence[float], *, confidence: float = 0.95,
                   margin: float = SAME_SPEED_MARGIN) -> dict[str, float | int | str | None]:
    """How much faster ``after`` ran than ``before`` from bursts timed in alternation: the median
    of the per-burst ratios before/after (each burst's pair shared the machine's load of that
    moment) with :func:`median_interval`. ``verdict``: "faster" or "slower" where the whole interval
    lies beyond ``margin`` of 1, "same speed" where it lies within it, else "inconclusive"; "too few
    bursts" (no interval) below six."""
    b, a = [float(x) for x in before], [float(x) for x in after]
    if len(b) != len(a) or not b or not all(math.isfinite(x) and x > 0 for x in (*b, *a)):
        raise InputError("paired_speedup needs as many positive, finite burst times after as before")
    ratios = [x / y for x, y in zip(b, a)]
    out = {"speedup": float(statistics.median(ratios)), "low": None, "high": None, "confidence": None,
           "margin": margin, "bursts": len(ratios), "verdict": "too few bursts"}
    interval = median_interval(ratios, confidence)
    if interval is not None:
        low, high, coverage = interval
        verdict = ("faster" if low > 1.0 + margin else "slower" if high < 1.0 / (1.0 + margin)
                   else "same speed" if low >= 1.0 / (1.0 + margin) and high <= 1.0 + margin else "inconclusive")
        out.update(low=low, high=high, confidence=coverage, verdict=verdict)
    return out


def speedup_sentence(s: dict) -> str:
    """``1.24x faster (98.8% interval 1.10-1.35x)``, ``1.30x slower (...)``, ``same speed within 3%
    (speed ratio 1.01x, ...)``, ``inconclusive: ...``: a speed-up is claimed only where its interval
    lies beyond the margin (three decimals where the interval is narrow)."""
    if s["verdict"] == "too few bursts":
        return f"too few bursts ({s['bursts']}) to tell: speed ratio {s['speedup']:.2f}x"
    low, high, est = s["low"], s["high"], s["speedup"]
    if s["verdict"] == "slower":
        low, high, est = 1 / high, 1 / low, 1 / est
    d = 3 if high - low < 0.05 else 2
    interval = f"{s['confidence']:.1%} interval {low:.{d}f}-{high:.{d}f}x"
    if s["verdict"] == "same speed":
        return f"same speed within {100 * s['margin']:g}% (speed ratio {est:.{d}f}x, {interval})"
    if s["verdict"] == "inconclusive":
        return f"inconclusive: speed ratio {est:.{d}f}x, {interval}"
    return f"{est:.{d}f}x {s['verdict']} ({interval})"


def interleaved_line(speed: dict) -> str | None:
    """The line a build's summary (text and report.html) gives its interleaved timing: the medians
    and :func:`speedup_sentence`; the note where the timing failed; None where there was none."""
    if "verdict" in speed:
        stat = "" if speed.get("statistic", "median") == "median" else f" (burst {speed['statistic']}s)"
        return (f"timed interleaved ({speed['bursts']} alternating bursts): dense {speed['dense_ms']:.3f} ms, "
                f"pruned {speed['pruned_ms']:.3f} ms{stat}: {speedup_sentence(speed)}")
    return speed["note"] if "failed" in speed.get("note", "") else None
