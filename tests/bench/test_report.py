"""The human report: table rows, verdict reasons and the final PASSED/FAILED line."""
from __future__ import annotations

from deploypipe.bench import compare_runs
from deploypipe.bench.regression_gate import GateSettings
from deploypipe.bench.bench_summary import baseline_line, header_lines, notes, summary_line, table_lines

from .conftest import make_run, noisy

GATE = GateSettings(max_slowdown=0.10)


def _runs(slow: float):
    base = make_run({"a b1 3x8x8": noisy(1.0, 0.01, seed=1), "b b1 3x8x8": noisy(2.0, 0.01, seed=2)},
                    reference=noisy(0.5, 0.01, seed=3))
    cur = make_run({"a b1 3x8x8": noisy(1.0 * slow, 0.01, seed=4),
                    "b b1 3x8x8": noisy(2.0, 0.01, seed=5)}, reference=noisy(0.5, 0.01, seed=6))
    return base, cur


def test_a_run_without_baseline():
    _, run = _runs(1.0)
    lines = header_lines(run) + table_lines(run)
    assert "2 cases, 10 interleaved rounds" in lines[0] and run.fingerprint.key() in lines[1]
    assert lines[2].split()[:3] == ["case", "median", "ms"]
    assert any(l.startswith("reference b1 16x8x8") for l in lines)
    assert summary_line(None, run) == "PASSED: 2 cases measured; no baseline compared."
    assert notes(None) == []


def test_passed_and_failed_lines():
    base, ok_run = _runs(1.0)
    comparison = compare_runs(base, ok_run, GATE)
    assert summary_line(comparison, ok_run).startswith(
        "PASSED: no case slower than +10 % beyond the measured noise; 2 ok, 0 inconclusive")
    _, slow_run = _runs(1.5)
    comparison = compare_runs(base, slow_run, GATE)
    line = summary_line(comparison, slow_run)
    assert line.startswith("FAILED: 1 of 2 cases slower than +10 %") and "a b1 3x8x8 (+" in line
    rows = table_lines(slow_run, comparison)
    assert rows[1].startswith("a b1 3x8x8") and rows[1].endswith("REGRESSION")
    assert rows[2].endswith(" ok") and rows[-1].endswith("(machine drift)")
    assert notes(comparison) == [f"  a b1 3x8x8: regression: {comparison.verdicts[0].reason}"]
    assert "load average 0.10 0.10 0.10" in baseline_line(base, "x.json")


def test_missing_cases_get_a_row():
    base, cur = _runs(1.0)
    cur = make_run({"a b1 3x8x8": noisy(1.0, 0.01, seed=4)})
    comparison = compare_runs(base, cur, GATE)
    rows = table_lines(cur, comparison)
    assert any(r.startswith("b b1 3x8x8") and r.endswith("missing") for r in rows)
    assert "1 missing" in summary_line(comparison, cur)
