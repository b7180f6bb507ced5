"""The gate's statistics on synthetic per-round values: deterministic, no timing."""
from __future__ import annotations

import numpy as np
import pytest

from deploypipe.bench.compare import compare_runs, machine_drift
from deploypipe.bench.regression_gate import (FASTER, INCONCLUSIVE, MISSING, NEW, OK, REGRESSION,
                                   CaseRounds, Drift, GateSettings, Interval, judge,
                                   ratio_interval)

from deploypipe.errors import InputError

from .conftest import make_run, noisy

GATE = GateSettings(max_slowdown=0.10)


def rounds(values, fastest=None, spread: float = 1.05) -> CaseRounds:
    """Rounds whose medians are ``values`` and whose fastest iterations are ``fastest``
    (default: the medians / ``spread``)."""
    values = tuple(values)
    return CaseRounds(values, values, tuple(fastest or [v / spread for v in values]))


def test_ratio_interval_brackets_the_true_ratio():
    r = ratio_interval(noisy(2.0, 0.02, seed=1), noisy(3.0, 0.02, seed=2), confidence=0.95,
                       resamples=2000, seed=0)
    assert r.low < 1.5 < r.high
    assert r.low <= r.estimate <= r.high
    assert r.high - r.low < 0.1


def test_ratio_interval_is_repeatable_and_widens_with_noise():
    a, b = noisy(1.0, 0.05, seed=3), noisy(1.0, 0.05, seed=4)
    first = ratio_interval(a, b, confidence=0.95, resamples=500, seed=7)
    assert first == ratio_interval(a, b, confidence=0.95, resamples=500, seed=7)
    wide = ratio_interval(noisy(1.0, 0.3, seed=3), noisy(1.0, 0.3, seed=4), confidence=0.95,
                          resamples=500, seed=7)
    assert wide.high - wide.low > 3 * (first.high - first.low)


@pytest.mark.parametrize("slowdown, cv, status", [
    (0.00, 0.01, OK),            # identical and quiet
    (0.05, 0.01, OK),            # slower, but within the 10 % threshold
    (0.08, 0.01, OK),
    (0.13, 0.005, REGRESSION),   # beyond the threshold and far beyond the noise
    (0.50, 0.05, REGRESSION),
    (-0.30, 0.01, FASTER),
    (0.15, 0.30, INCONCLUSIVE),  # beyond the threshold, but the noise covers it
    (0.00, 0.40, INCONCLUSIVE),  # identical, far too noisy to rule out +10 %
])
def test_judge(slowdown, cv, status):
    v = judge("m b1 3x8x8", rounds(noisy(2.0, cv, seed=10)),
              rounds(noisy(2.0 * (1 + slowdown), cv, seed=11)), GATE)
    assert v.status == status, v
    assert v.reason


def test_a_slowdown_within_noise_is_inconclusive_not_passed():
    v = judge("m", rounds(noisy(1.0, 0.15, seed=1)), rounds(noisy(1.12, 0.15, seed=2)), GATE)
    assert v.status == INCONCLUSIVE
    assert "too noisy" in v.reason and "+10 %" in v.reason


def test_too_few_rounds_are_inconclusive():
    v = judge("m", rounds([1.0, 1.0]), rounds([5.0, 5.0]), GATE)
    assert v.status == INCONCLUSIVE and "2 rounds" in v.reason and v.ratio is None


def test_machine_drift_excuses_a_slowdown_it_can_explain():
    base, cur = rounds(noisy(1.0, 0.01, seed=1)), rounds(noisy(1.3, 0.01, seed=2))
    assert judge("m", base, cur, GATE).status == REGRESSION
    drift = Interval(1.15, 1.13, 1.17)  # the reference ran 15 % slower in the current run
    v = judge("m", base, cur, GATE, drift)
    assert v.status == INCONCLUSIVE and "the machine was 15.0 % slower" in v.reason
    # ... but not a slowdown far beyond what the drift can explain: 1.1 * 1.15**2 = 1.45
    assert judge("m", base, rounds(noisy(2.0, 0.01, seed=2)), GATE, drift).status == REGRESSION


def test_spread_out_iterations_excuse_a_slowdown_they_can_explain():
    """Competing processes preempt some iterations: the rounds' medians drift away from
    their fastest iterations. A slower model moves both alike."""
    base = rounds(noisy(1.0, 0.01, seed=1), spread=1.02)
    busy = rounds(noisy(1.3, 0.01, seed=2), spread=1.02 * 1.2)
    v = judge("m", base, busy, GATE)
    assert v.spread_drift == pytest.approx(1.2)
    assert v.status == INCONCLUSIVE and "20.0 % more spread out" in v.reason
    slower = rounds(noisy(1.3, 0.01, seed=2), spread=1.02)
    assert judge("m", base, slower, GATE).status == REGRESSION


def test_a_busier_baseline_makes_a_pass_inconclusive():
    base, cur = rounds(noisy(1.0, 0.01, seed=1)), rounds(noisy(1.0, 0.01, seed=2))
    drift = Interval(0.8, 0.78, 0.82)  # the baseline was taken on a busier machine
    v = judge("m", base, cur, GATE, drift)
    assert v.status == INCONCLUSIVE and "hide a slowdown" in v.reason
    assert "machine was 25.0 % faster" in v.reason


def test_drift_allowances_grow_with_the_larger_drift_to_the_power_of_the_factor():
    assert Drift().allowances(3.0) == (1.0, 1.0)
    up, down = Drift(machine=1.2, spread=1.1).allowances(2.0)
    assert up == pytest.approx(1.44) and down == 1.0
    up, down = Drift(machine=0.8, spread=1.1).allowances(1.0)
    assert up == pytest.approx(1.1) and down == pytest.approx(1.25)


def test_a_regression_must_also_slow_the_fastest_iterations():
    """Other processes preempting ours inflate the median but leave some iterations fast;
    a slower model moves them all."""
    base, cur = noisy(1.0, 0.01, seed=1), noisy(1.5, 0.01, seed=2)
    fast_base, fast_cur = noisy(0.9, 0.01, seed=3), noisy(0.9, 0.01, seed=4)
    # medians: the spread drift is not measured, only the fastest iterations judge
    v = judge("m", CaseRounds(tuple(base), (), tuple(fast_base)),
              CaseRounds(tuple(cur), (), tuple(fast_cur)), GATE)
    assert v.status == INCONCLUSIVE and "not in the fastest iterations" in v.reason
    assert v.fastest is not None and v.fastest.low < 1.1 and v.spread_drift is None
    slower_fastest = CaseRounds(tuple(cur), (), tuple(noisy(1.35, 0.01, seed=4)))
    assert judge("m", CaseRounds(tuple(base), (), tuple(fast_base)), slower_fastest,
                 GATE).status == REGRESSION
    unconfirmed = GateSettings(max_slowdown=0.10, confirm_fastest=False)
    assert judge("m", CaseRounds(tuple(base), (), tuple(fast_base)),
                 CaseRounds(tuple(cur), (), tuple(fast_cur)), unconfirmed).status == REGRESSION


def test_no_false_alarms_on_identical_noisy_distributions():
    """200 pairs of runs drawn from one distribution with 10 % CV: none fails at +10 %."""
    alarms = sum(judge("m", rounds(noisy(1.0, 0.10, seed=2 * i)),
                       rounds(noisy(1.0, 0.10, seed=2 * i + 1)), GATE).status == REGRESSION
                 for i in range(200))
    assert alarms == 0


def test_large_slowdowns_are_caught_despite_noise():
    caught = sum(judge("m", rounds(noisy(1.0, 0.10, seed=2 * i)),
                       rounds(noisy(1.5, 0.10, seed=2 * i + 1)), GATE).status == REGRESSION
                 for i in range(100))
    assert caught >= 95


def test_compare_runs_reports_new_and_missing_cases_and_the_drift():
    base = make_run({"a": noisy(1.0, 0.01, seed=1), "gone": noisy(1.0, 0.01)},
                    reference=noisy(1.0, 0.01, seed=5))
    cur = make_run({"a": noisy(2.0, 0.01, seed=2), "added": noisy(1.0, 0.01)},
                   reference=noisy(1.0, 0.01, seed=6))
    comparison = compare_runs(base, cur, GATE)
    status = {v.case: v.status for v in comparison.verdicts}
    assert status == {"a": REGRESSION, "added": NEW, "gone": MISSING}
    assert comparison.drift is not None and comparison.drift.low < 1.0 < comparison.drift.high
    assert not comparison.passed()
    assert [v.case for v in comparison.regressions] == ["a"]


def test_a_baseline_without_any_of_the_cases_is_refused():
    with pytest.raises(InputError, match="has none of this run's cases"):
        compare_runs(make_run({"a": [1.0] * 3}), make_run({"b": [1.0] * 3}), GATE)


def test_strict_fails_inconclusive_cases():
    base = make_run({"a": noisy(1.0, 0.4, seed=1)})
    comparison = compare_runs(base, make_run({"a": noisy(1.0, 0.4, seed=2)}), GATE)
    assert [v.status for v in comparison.verdicts] == [INCONCLUSIVE]
    assert comparison.passed() and not comparison.passed(strict=True)


def test_drift_is_not_measured_without_a_reference_or_across_references():
    with_ref = make_run({"a": [1.0] * 5}, reference=[1.0] * 5)
    assert machine_drift(make_run({"a": [1.0] * 5}), with_ref, GATE) is None
    assert machine_drift(with_ref, with_ref, GATE.__class__(reference=False)) is None
    assert machine_drift(with_ref, with_ref, GATE).estimate == pytest.approx(1.0)


def test_the_gate_uses_the_runs_statistic():
    base = make_run({"a": noisy(1.0, 0.01, seed=1)})
    cur = make_run({"a": noisy(1.0, 0.01, seed=2)})
    p99 = np.median([r.p99 for r in cur.cases[0].rounds])
    assert p99 > 1.1  # the synthetic rounds' p99 is 1.2x their median
    comparison = compare_runs(base, cur, GATE)
    assert comparison.settings.statistic == "median"
    assert comparison.verdicts[0].current_ms == pytest.approx(np.median(cur.cases[0].values("median")))
