"""What a benchmark run records: every case's per-round statistics, the machine and the
settings, as frozen objects that round-trip through JSON (a saved run is a baseline)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ..errors import InputError
from ..measure.fingerprint import Fingerprint
from ..measure.stats import LatencyStats
from .regression_gate import CaseRounds

FORMAT = "deploypipe.bench/1"

# LatencyStats attribute -> its field in LatencyStats.to_dict() (trtexec spelling).
_STAT_FIELDS = {"n": "count", "batch": "batch", "mean": "averageMs", "median": "medianMs",
                "min": "minMs", "max": "maxMs", "p90": "percentile90Ms",
                "p95": "percentile95Ms", "p99": "percentile99Ms", "std": "stdMs", "cv": "cv",
                "throughput": "throughput"}


@dataclass(frozen=True)
class RunSettings:
    """How the cases were timed: rounds, iterations per round and the gate's statistic."""

    repeats: int
    warmup: int
    iterations: int
    statistic: str
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class CaseResult:
    """One case (a model at one batch and input shape) over all rounds of a run."""

    id: str
    batch: int
    shape: tuple[int, ...]
    model: dict[str, Any]  # where the model came from (zoo name and kwargs, file)
    onnx_sha256: str
    rounds: tuple[LatencyStats, ...]

    def values(self, statistic: str) -> list[float]:
        """The statistic (median, p90, p99) of each round, in round order."""
        return [r.statistic(statistic) for r in self.rounds]

    def fastest(self) -> list[float]:
        """Each round's fastest iteration, in round order."""
        return [r.min for r in self.rounds]

    def gate_rounds(self, statistic: str) -> CaseRounds:
        """What the gate needs of this case: per round, the statistic, median and fastest."""
        return CaseRounds(tuple(self.values(statistic)), tuple(self.values("median")),
                          tuple(self.fastest()))

    def summary(self, statistic: str) -> dict[str, float]:
        """Medians over rounds of each round's median, p90, p99 and CV (iteration to
        iteration); ``repeatCv``: the CV over rounds of the gate's statistic."""
        values = np.asarray(self.values(statistic))
        median = float(np.median([r.median for r in self.rounds]))
        return {
            "medianMs": median,
            "percentile90Ms": float(np.median([r.p90 for r in self.rounds])),
            "percentile99Ms": float(np.median([r.p99 for r in self.rounds])),
            "cv": float(np.median([r.cv for r in self.rounds])),
            "repeatCv": float(values.std() / values.mean()),
            "throughput": self.batch * 1000.0 / median,
            "gateMs": float(np.median(values)),
        }

    def to_dict(self, statistic: str) -> dict[str, Any]:
        return {"id": self.id, "batch": self.batch, "inputShape": list(self.shape),
                "model": self.model, "onnxSha256": self.onnx_sha256,
                "summary": self.summary(statistic),
                "rounds": [r.to_dict() for r in self.rounds]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CaseResult":
        return cls(id=str(d["id"]), batch=int(d["batch"]),
                   shape=tuple(int(x) for x in d["inputShape"]), model=dict(d["model"]),
                   onnx_sha256=str(d["onnxSha256"]),
                   rounds=tuple(stats_from_dict(r) for r in d["rounds"]))


@dataclass(frozen=True)
class BenchRun:
    """A whole run: the suite, the target profile (as data), the machine and every case.
    ``reference`` is the fixed model that measures the machine's drift between runs."""

    suite: str
    target: dict[str, Any]
    fingerprint: Fingerprint
    settings: RunSettings
    created: str
    cases: tuple[CaseResult, ...]
    reference: CaseResult | None = None
    load_average: dict[str, list[float] | None] = field(default_factory=dict)

    @property
    def target_name(self) -> str:
        return str(self.target.get("name", "?"))

    def case(self, case_id: str) -> CaseResult | None:
        return next((c for c in self.cases if c.id == case_id), None)

    def to_dict(self) -> dict[str, Any]:
        stat = self.settings.statistic
        return {
            "format": FORMAT, "suite": self.suite, "created": self.created,
            "target": self.target, "fingerprint": self.fingerprint.to_dict(),
            "settings": self.settings.to_dict(), "loadAverage": self.load_average,
            "cases": [c.to_dict(stat) for c in self.cases],
            "reference": self.reference.to_dict(stat) if self.reference else None,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str) -> "BenchRun":
        """Rebuild a saved run; a file of another format or a damaged one is an InputError."""
        if not isinstance(d, Mapping) or d.get("format") != FORMAT:
            found = d.get("format") if isinstance(d, Mapping) else None
            raise InputError(f"{source!r} is not a deploypipe benchmark run (format "
                             f"{found!r}, expected {FORMAT!r})",
                             hint="give a file written by `deploypipe bench --save`")
        try:
            return cls._parse(d)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(f"benchmark run {source!r} is damaged ({type(exc).__name__}: "
                             f"{exc})", hint="take the baseline again with --save") from None

    @classmethod
    def _parse(cls, d: Mapping[str, Any]) -> "BenchRun":
        ref = d.get("reference")
        return cls(suite=str(d["suite"]), target=dict(d["target"]),
                   fingerprint=fingerprint_from_dict(d["fingerprint"]),
                   settings=RunSettings(**d["settings"]), created=str(d["created"]),
                   cases=tuple(CaseResult.from_dict(c) for c in d["cases"]),
                   reference=CaseResult.from_dict(ref) if ref else None,
                   load_average=dict(d.get("loadAverage") or {}))


def stats_from_dict(d: Mapping[str, Any]) -> LatencyStats:
    """The inverse of ``LatencyStats.to_dict``; refuses non-positive or missing values."""
    values = {attr: d[key] for attr, key in _STAT_FIELDS.items()}
    stats = LatencyStats(**{k: int(v) if k in ("n", "batch") else float(v)
                            for k, v in values.items()})
    if not (stats.median > 0 and math.isfinite(stats.p99) and stats.n > 0):
        raise ValueError(f"latency statistics out of range: {dict(d)}")
    return stats


def fingerprint_from_dict(d: Mapping[str, Any]) -> Fingerprint:
    """A Fingerprint from ``Fingerprint.to_dict()`` (its ``key`` is recomputed)."""
    names = Fingerprint.__dataclass_fields__
    return Fingerprint(**{k: v for k, v in d.items() if k in names})
