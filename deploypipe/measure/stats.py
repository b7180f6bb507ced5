"""Summary statistics of repeated latency measurements.

Percentiles use linear interpolation between order statistics (numpy's default); the
standard deviation is the population one, as trtexec's "coefficient of variance" uses.
``to_dict`` spells fields as trtexec's JSON exports do where they overlap
(``count``, ``averageMs``, ``medianMs``) and keeps the same ``...Ms`` style elsewhere.
"""
from __future__ import annotations

import math
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


#: Speed ratios within this of 1 are not called faster or slower: the bootstrap interval covers the
#: noise within one run, and identical builds of a 0.1-ms model on our 2-core machine, each timed
#: interleaved, disagreed by about this much (``default_cpu`` in benchmarks/results/readme_examples.json).
SAME_SPEED_MARGIN = 0.03


def paired_speedup(before: Sequence[float], after: Sequence[float], *, confidence: float = 0.95,
                   resamples: int = 2000, seed: int = 0,
                   margin: float = SAME_SPEED_MARGIN) -> dict[str, float | int | str]:
    """How much faster ``after`` ran than ``before`` from bursts timed in alternation: the median
    of the per-burst ratios before/after (each burst's pair shared the machine's load of that
    moment), with a seeded percentile-bootstrap interval over the bursts. ``verdict`` is
    "faster" or "slower" only when the whole interval lies beyond ``margin`` of 1, else "no
    measurable difference"."""
    import numpy as np

    b, a = np.asarray(before, dtype=float), np.asarray(after, dtype=float)
    if b.size != a.size or b.size == 0 or (b <= 0).any() or (a <= 0).any():
        raise InputError("paired_speedup needs as many positive burst times after as before")
    ratios = b / a
    boot = np.median(ratios[np.random.default_rng(seed).integers(0, ratios.size, (resamples, ratios.size))], axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = (float(x) for x in np.quantile(boot, [tail, 1.0 - tail]))
    verdict = ("faster" if low > 1.0 + margin else "slower" if high < 1.0 / (1.0 + margin)
               else "no measurable difference")
    return {"speedup": float(np.median(ratios)), "low": low, "high": high, "confidence": confidence,
            "margin": margin, "bursts": int(ratios.size), "verdict": verdict}


def speedup_sentence(s: dict) -> str:
    """``1.24x faster (95% interval 1.10-1.35x)``, ``1.30x slower (95% interval 1.21-1.38x)``, or
    ``no measurable difference (speed ratio 1.02x, 95% interval 1.012-1.031x, within 3%)``: a speed-up
    is claimed only where its interval lies beyond the margin (three decimals where it is narrow)."""
    low, high, est = s["low"], s["high"], s["speedup"]
    if s["verdict"] == "slower":
        low, high, est = 1 / high, 1 / low, 1 / est
    d = 3 if high - low < 0.05 else 2
    interval = f"{s['confidence']:.0%} interval {low:.{d}f}-{high:.{d}f}x"
    if s["verdict"] == "no measurable difference":
        return f"no measurable difference (speed ratio {est:.{d}f}x, {interval}, within {s['margin']:.0%})"
    return f"{est:.{d}f}x {s['verdict']} ({interval})"
