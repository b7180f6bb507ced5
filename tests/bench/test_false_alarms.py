"""Identical runs on this (shared, noisy) machine must not fail the gate at +10 %.

The fast version compares 2 runs with a baseline; the slow one 10 and counts false alarms
(tools/bench_gate_noise.py measures the rate on bigger models)."""
from __future__ import annotations

import pytest

from deploypipe.bench import compare_runs, load_suite, run_suite

from .conftest import SMALL_SUITE


def _false_alarms(tmp_path, runs: int) -> list[str]:
    path = tmp_path / "same.toml"
    path.write_text(SMALL_SUITE.format(name="same", width=0.25, threshold=0.10, repeats=10))
    suite = load_suite(path)
    baseline = run_suite(suite)
    alarms = []
    for i in range(runs):
        comparison = compare_runs(baseline, run_suite(suite), suite.gate)
        alarms += [f"run {i}: {v.case} {v.ratio.percent()}" for v in comparison.regressions]
        assert len(comparison.verdicts) == 2
    return alarms


def test_identical_runs_do_not_fail(tmp_path):
    assert _false_alarms(tmp_path, 2) == []


@pytest.mark.slow
def test_ten_identical_runs_raise_no_false_alarm(tmp_path):
    alarms = _false_alarms(tmp_path, 10)
    assert alarms == [], f"{len(alarms)} false alarms in 10 identical runs: {alarms}"
