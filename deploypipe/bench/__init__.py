"""Benchmark suites and the latency regression gate (``deploypipe bench``).

>>> suite = load_suite("benchmarks/suites/smoke.toml")
>>> run = run_suite(suite, "cpu-batch32")
>>> store = BaselineStore("benchmarks/baselines")
>>> baseline = load_run(store.find("main", run.target_name, run.fingerprint))
>>> check_comparable(baseline, run)
>>> comparison = compare_runs(baseline, run, suite.gate)
>>> comparison.passed()

A suite (TOML) lists models, targets, batches and shapes; a run times every case in
interleaved rounds together with a fixed reference model; baselines are stored per target
and machine fingerprint; the gate (``deploypipe.bench.regression_gate``) fails a case only when it is
slower than the threshold beyond the noise measured in both runs.
"""
from __future__ import annotations

from .baselines import BaselineStore, check_comparable, load_run
from .compare import Comparison, compare_runs
from .regression_gate import CaseRounds, GateSettings, Interval, Verdict, judge, ratio_interval
from .results import BenchRun, CaseResult, RunSettings
from .runner import resolve_target, run_suite
from .suite import ModelSpec, Suite, load_suite

__all__ = ["BaselineStore", "BenchRun", "CaseResult", "CaseRounds", "Comparison", "GateSettings",
           "Interval",
           "ModelSpec", "RunSettings", "Suite", "Verdict", "check_comparable", "compare_runs",
           "judge", "load_run", "load_suite", "ratio_interval", "resolve_target", "run_suite"]
