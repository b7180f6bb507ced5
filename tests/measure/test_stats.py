from __future__ import annotations

import math

import pytest

from deploypipe.errors import InputError
from deploypipe.measure.stats import LatencyStats, percentile


def test_one_to_ten_hand_computed():
    s = LatencyStats.from_samples([float(x) for x in range(10, 0, -1)], batch=4)
    assert (s.n, s.batch, s.min, s.max) == (10, 4, 1.0, 10.0)
    assert s.mean == pytest.approx(5.5)
    assert s.median == pytest.approx(5.5)
    # linear interpolation: position (n - 1) * q / 100 in the sorted samples
    assert s.p90 == pytest.approx(9.1)  # 9 + 0.1 * (10 - 9)
    assert s.p95 == pytest.approx(9.55)
    assert s.p99 == pytest.approx(9.91)
    assert s.std == pytest.approx(math.sqrt(8.25))  # population std of 1..10
    assert s.cv == pytest.approx(math.sqrt(8.25) / 5.5)
    assert s.throughput == pytest.approx(4 * 1000 / 5.5)


def test_three_unsorted_samples():
    s = LatencyStats.from_samples([5.0, 1.0, 3.0])
    assert s.median == 3.0
    assert s.p90 == pytest.approx(4.6)  # position 1.8: 3 + 0.8 * 2
    assert s.throughput == pytest.approx(1000 / 3)


def test_single_sample_has_no_spread():
    s = LatencyStats.from_samples([2.0])
    assert (s.median, s.p99, s.std, s.cv) == (2.0, 2.0, 0.0, 0.0)


def test_to_dict_uses_trtexec_names():
    d = LatencyStats.from_samples([1.0, 2.0, 3.0], batch=2).to_dict()
    assert d["count"] == 3 and d["batch"] == 2
    assert d["averageMs"] == pytest.approx(2.0) and d["medianMs"] == 2.0
    assert {"minMs", "maxMs", "percentile90Ms", "percentile95Ms", "percentile99Ms", "stdMs",
            "cv", "throughput"} <= d.keys()


def test_statistic_by_name():
    s = LatencyStats.from_samples(range(1, 11))
    assert s.statistic("median") == s.median and s.statistic("p90") == s.p90
    with pytest.raises(InputError, match="p42"):
        s.statistic("p42")


def test_empty_samples_refused():
    with pytest.raises(InputError):
        LatencyStats.from_samples([])
    with pytest.raises(InputError):
        percentile([], 50)


def test_frozen():
    s = LatencyStats.from_samples([1.0])
    with pytest.raises(AttributeError):
        s.median = 3.0  # type: ignore[misc]


def test_a_slowdown_is_said_as_one():
    from deploypipe.measure.stats import speed_phrase

    assert speed_phrase(1.61, 1.0) == "1.61x faster"
    assert speed_phrase(1.0, 1.22) == "1.22x slower"
    assert speed_phrase(1.0, 1.002) == "as fast" and speed_phrase(0.0, 1.0) == "—"


def test_paired_bursts_cancel_the_machines_drift():
    """The load doubles and halves between bursts, the pruned model always 1.25x faster in the
    same moment: the paired estimate is exact and its interval tight, where the medians of the two
    models' bursts taken apart would be at the mercy of which bursts were slow."""
    from deploypipe.measure.stats import paired_speedup, speedup_sentence

    load = [1.0, 2.0, 0.7, 1.6, 1.1, 2.4, 0.9]
    s = paired_speedup([1.25 * x for x in load], load)
    assert s["speedup"] == pytest.approx(1.25) and s["low"] == pytest.approx(1.25) == s["high"]
    assert s["verdict"] == "faster" and s["bursts"] == 7
    assert speedup_sentence(s) == "1.250x faster (98.4% interval 1.250-1.250x)"


def test_the_median_interval_is_the_sign_tests():
    """k-th smallest to k-th largest with the binomial's exact coverage: the 2nd and 10th of 11
    (98.8%), the 6th and 15th of 20 (95.9%); under six values there is no 95% interval."""
    from deploypipe.measure.stats import median_interval

    assert median_interval(range(11)) == (1, 9, pytest.approx(1 - 2 * 12 / 2 ** 11))
    assert median_interval(list(range(20))[::-1])[:2] == (5, 14)
    assert median_interval(range(6)) == (0, 5, pytest.approx(1 - 2 / 64))
    assert median_interval(range(5)) is None


def test_a_speedup_is_claimed_only_where_its_interval_is_beyond_the_margin():
    from deploypipe.measure.stats import paired_speedup, speedup_sentence

    noisy = paired_speedup([1.0, 1.1, 1.2, 1.0, 1.05, 1.0, 1.1], [1.2, 0.85, 1.3, 0.82, 0.9, 1.0, 1.0])
    assert noisy["verdict"] == "inconclusive" and noisy["low"] < 1 < noisy["high"]
    assert speedup_sentence(noisy).startswith("inconclusive: speed ratio 1.10x")
    # a tight interval inside the margin is a claim too: the same speed, within what runs disagree by
    same = paired_speedup([1.02, 1.021, 1.019, 1.02, 1.02, 1.018], [1.0] * 6)
    assert same["low"] > 1.0 and same["verdict"] == "same speed"
    assert speedup_sentence(same).startswith("same speed within 3% (speed ratio 1.020x")
    assert paired_speedup([1.02, 1.021, 1.019, 1.02, 1.02, 1.018], [1.0] * 6, margin=0.0)["verdict"] == "faster"
    assert "same speed within 2.5% " in speedup_sentence(paired_speedup([1.02] * 6, [1.0] * 6, margin=0.025))
    # an interval reaching beyond the margin on one side only proves nothing
    assert paired_speedup([1.0, 1.02, 1.05, 1.03, 1.06, 1.04], [1.0] * 6)["verdict"] == "inconclusive"
    slower = paired_speedup([1.0] * 6, [2.0, 2.1, 1.9, 2.0, 2.0, 2.0])
    assert slower["verdict"] == "slower" and speedup_sentence(slower) == "2.00x slower (96.9% interval 1.90-2.10x)"
    few = paired_speedup([1.3, 1.3], [1.0, 1.0])
    assert few["verdict"] == "too few bursts" and few["low"] is None and "too few bursts (2)" in speedup_sentence(few)
    for bad in (([1.0, 2.0], [1.0]), ([1.0], [0.0]), ([float("nan")], [1.0])):
        with pytest.raises(InputError):
            paired_speedup(*bad)
