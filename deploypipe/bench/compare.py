"""Comparing a run with its baseline, case by case, through the gate."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..errors import InputError
from .regression_gate import (INCONCLUSIVE, MISSING, NEW, REGRESSION, GateSettings, Interval, Verdict,
                   case_seed, judge, ratio_interval)
from .results import BenchRun


@dataclass(frozen=True)
class Comparison:
    """Every case's verdict, the machine's drift between the runs (from the reference model)
    and the settings used."""

    verdicts: tuple[Verdict, ...]
    settings: GateSettings
    drift: Interval | None

    def with_status(self, status: str) -> list[Verdict]:
        return [v for v in self.verdicts if v.status == status]

    @property
    def regressions(self) -> list[Verdict]:
        return self.with_status(REGRESSION)

    @property
    def inconclusive(self) -> list[Verdict]:
        return self.with_status(INCONCLUSIVE)

    def passed(self, *, strict: bool = False) -> bool:
        """No regression (and with ``strict``, no case too noisy to judge either)."""
        return not self.regressions and not (strict and self.inconclusive)

    def to_dict(self) -> dict[str, object]:
        return {"settings": dataclasses.asdict(self.settings),
                "drift": self.drift.to_dict() if self.drift else None,
                "cases": [v.to_dict() for v in self.verdicts]}


def compare_runs(baseline: BenchRun, current: BenchRun, settings: GateSettings) -> Comparison:
    """Judge every case of ``current`` against the same case of ``baseline``; cases in one
    run only are reported as new or missing, never as a pass or a failure."""
    settings = dataclasses.replace(settings, statistic=current.settings.statistic)
    if not {c.id for c in current.cases} & {c.id for c in baseline.cases}:
        raise InputError(f"the baseline (suite {baseline.suite!r}) has none of this run's "
                         f"cases ({', '.join(c.id for c in current.cases[:3])}, ...)",
                         hint="compare with a baseline of the same suite")
    drift = machine_drift(baseline, current, settings)
    verdicts = []
    for case in current.cases:
        base = baseline.case(case.id)
        if base is None:
            verdicts.append(Verdict(case.id, NEW, "not in the baseline"))
            continue
        verdicts.append(judge(case.id, base.gate_rounds(settings.statistic),
                              case.gate_rounds(settings.statistic), settings, drift))
    ids = {c.id for c in current.cases}
    verdicts += [Verdict(c.id, MISSING, "in the baseline but not in this run")
                 for c in baseline.cases if c.id not in ids]
    return Comparison(tuple(verdicts), settings, drift)


def machine_drift(baseline: BenchRun, current: BenchRun,
                  settings: GateSettings) -> Interval | None:
    """How much slower (ratio > 1) the reference model ran now than at the baseline, with
    its interval; ``None`` when the gate does not use it or a run lacks it."""
    if not (settings.reference and baseline.reference and current.reference):
        return None
    if baseline.reference.onnx_sha256 != current.reference.onnx_sha256:
        return None  # another deploypipe's reference: not comparable
    stat = settings.statistic
    return ratio_interval(baseline.reference.values(stat), current.reference.values(stat),
                          confidence=settings.confidence, resamples=settings.resamples,
                          seed=case_seed("reference"))
