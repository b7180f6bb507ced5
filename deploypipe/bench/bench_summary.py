"""The human report of a run: a table of cases (with the gate's verdicts when compared) and
one final ``PASSED``/``FAILED`` line. Pure functions returning lines; the CLI prints them."""
from __future__ import annotations

from .compare import Comparison
from .regression_gate import FASTER, INCONCLUSIVE, MISSING, NEW, OK, REGRESSION, Verdict
from .results import BenchRun, CaseResult

_HEAD = (f"{'case':<28} {'median ms':>10} {'p90 ms':>9} {'p99 ms':>9} {'CV %':>6} "
         f"{'rep CV %':>8} {'inf/s':>9}")


def header_lines(run: BenchRun) -> list[str]:
    s = run.settings
    load = run.load_average.get("before")
    return [f"suite {run.suite} on target {run.target_name}: {len(run.cases)} cases, "
            f"{s.repeats} interleaved rounds of {s.warmup} warm-up + {s.iterations} "
            f"iterations, gate statistic {s.statistic}",
            f"machine: {run.fingerprint.summary()}"
            + (f"; load average {' '.join(f'{x:.2f}' for x in load)}" if load else "")]


def baseline_line(baseline: BenchRun, source: str) -> str:
    """Which baseline the run is compared with, when it was taken and how busy it was."""
    load = baseline.load_average.get("before")
    return (f"baseline: {source}, taken {baseline.created} with {len(baseline.cases)} cases"
            + (f", load average {' '.join(f'{x:.2f}' for x in load)}" if load else ""))


def table_lines(run: BenchRun, comparison: Comparison | None = None) -> list[str]:
    """One row per case: medians over rounds of the median, p90, p99 and CV, the CV over
    rounds, throughput, and with a comparison the baseline, the change and the verdict."""
    verdicts = {v.case: v for v in comparison.verdicts} if comparison else {}
    head = _HEAD + (f" {'base ms':>9}  {'change [CI]':<26} status" if comparison else "")
    lines = [head]
    for case in run.cases:
        lines.append(_row(case, run.settings.statistic) + _verdict_cells(verdicts.get(case.id)))
    for v in verdicts.values():
        if v.status == MISSING:
            lines.append(f"{v.case:<28} {'-':>10}" + " " * 45 + _verdict_cells(v))
    if run.reference is not None:
        lines.append(_row(run.reference, run.settings.statistic)
                     + (_drift_cells(comparison) if comparison else ""))
    return lines


def summary_line(comparison: Comparison | None, run: BenchRun, *, strict: bool = False) -> str:
    """The final line: PASSED or FAILED, and why."""
    if comparison is None:
        return f"PASSED: {len(run.cases)} cases measured; no baseline compared."
    limit = f"+{100 * comparison.settings.max_slowdown:g} %"
    counts = _counts(comparison)
    if comparison.regressions:
        worst = ", ".join(f"{v.case} ({v.ratio.percent()})" for v in comparison.regressions)
        return (f"FAILED: {len(comparison.regressions)} of {len(comparison.verdicts)} cases "
                f"slower than {limit} beyond the measured noise: {worst}; {counts}.")
    if strict and comparison.inconclusive:
        return (f"FAILED: {len(comparison.inconclusive)} cases too noisy to judge against "
                f"{limit} (--strict): {counts}.")
    return f"PASSED: no case slower than {limit} beyond the measured noise; {counts}."


def notes(comparison: Comparison | None) -> list[str]:
    """The reasons behind every verdict that is not a plain ``ok``."""
    if comparison is None:
        return []
    return [f"  {v.case}: {v.status}: {v.reason}" for v in comparison.verdicts
            if v.status not in (OK,)]


def _row(case: CaseResult, statistic: str) -> str:
    s = case.summary(statistic)
    return (f"{case.id:<28} {s['medianMs']:>10.3f} {s['percentile90Ms']:>9.3f} "
            f"{s['percentile99Ms']:>9.3f} {100 * s['cv']:>6.1f} {100 * s['repeatCv']:>8.1f} "
            f"{s['throughput']:>9.1f}")


def _verdict_cells(v: Verdict | None) -> str:
    if v is None:
        return ""
    base = f"{v.baseline_ms:>9.3f}" if v.baseline_ms is not None else f"{'-':>9}"
    change = v.ratio.percent() if v.ratio else "-"
    status = v.status.upper() if v.status == REGRESSION else v.status
    return f" {base}  {change:<26} {status}"


def _drift_cells(comparison: Comparison) -> str:
    if comparison.drift is None:
        return f" {'-':>9}  {'-':<26} (machine drift not measured)"
    return f" {'':>9}  {comparison.drift.percent():<26} (machine drift)"


def _counts(comparison: Comparison) -> str:
    order = (OK, FASTER, REGRESSION, INCONCLUSIVE, NEW, MISSING)
    n = {s: len(comparison.with_status(s)) for s in order}
    return ", ".join(f"{n[s]} {s}" for s in order if n[s] or s in (OK, INCONCLUSIVE))
