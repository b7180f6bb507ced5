"""The latency table: interpolation, block costs, the additive prediction, flags, JSON."""
from __future__ import annotations

import numpy as np
import pytest

from deploypipe.errors import InputError
from deploypipe.hw import GroupTable, LatencyTable, sample_widths


def table() -> LatencyTable:
    return LatencyTable(dense_ms=10.0, groups={
        0: GroupTable(32, (8, 16, 24, 32), (1.0, 2.0, 3.0, 4.0)),
        3: GroupTable(16, (8, 16), (2.0, 3.0)),
    })


def test_interpolation_is_exact_at_samples_linear_between_and_clamped():
    t = table()
    assert t.latency(0, 16) == 2.0 and t.latency(0, 32) == 4.0
    assert t.latency(0, 20) == pytest.approx(2.5)
    assert t.latency(0, 12) == pytest.approx(1.5)
    assert t.latency(0, 1) == 1.0  # below the smallest sample: its value
    assert t.latency(0, 40) == 4.0


def test_cost_of_block_is_the_table_difference():
    t = table()
    assert t.cost_of_block(0, 32, 8) == pytest.approx(1.0)
    assert t.cost_of_block(0, 20, 8) == pytest.approx(2.5 - 1.5)
    assert t.cost_of_block(3, 16, 8) == pytest.approx(1.0)


def test_predict_adds_each_groups_change_to_the_dense_latency():
    t = table()
    assert t.predict([32, 5, 7, 16]) == pytest.approx(10.0)  # groups 1, 2 are not in the table
    assert t.predict([16, 5, 7, 8]) == pytest.approx(10.0 - 2.0 - 1.0)
    assert t.predict({0: 24}) == pytest.approx(9.0)


def test_a_narrower_width_measured_slower_is_flagged():
    t = LatencyTable(5.0, {1: GroupTable(32, (8, 16, 24, 32), (1.0, 2.5, 2.0, 3.0)),
                           2: GroupTable(16, (8, 16), (1.0, 1.01))})
    assert t.non_monotonic() == {1: [16]}
    assert t.summary()["non_monotonic"] == {"1": [16]}


def test_json_round_trip_and_a_foreign_file_is_one_sentence():
    t = table()
    again = LatencyTable.from_dict(t.to_dict())
    assert again.groups == t.groups and again.dense_ms == t.dense_ms
    with pytest.raises(InputError) as exc:
        LatencyTable.from_dict({"format": "something else"})
    msg = str(exc.value)
    assert "latency table" in msg and msg.endswith(".") and "\n" not in msg


def test_unknown_group_is_a_clear_error():
    with pytest.raises(InputError, match="no group 7"):
        table().latency(7, 8)


@pytest.mark.parametrize("width,step,block,expected", [
    (64, 8, 8, [8, 16, 24, 32, 40, 48, 56, 64]),
    (20, 8, 8, [8, 16, 20]),
    (6, 8, 8, [1, 6]),  # no wider than a block: any width may be kept
    (10, 4, 1, [1, 4, 8, 10]),
])
def test_sample_widths(width, step, block, expected):
    assert sample_widths(width, step, block) == expected


def test_sample_widths_are_capped_on_a_multiple_of_the_block():
    widths = sample_widths(2048, 8, 8, max_samples=64)
    assert len(widths) <= 66 and all(w % 8 == 0 for w in widths) and widths[-1] == 2048


def test_width_probe_finds_the_multiple_on_a_saw_tooth_and_none_on_a_smooth_kernel():
    """As measured here: multiples of 8 fastest, multiples of 4 between, odd widths slowest."""
    from deploypipe.hw.align import analyse_widths

    widths = list(range(24, 89))
    rng = np.random.default_rng(0)
    saw = [w * w * (1.0 if w % 8 == 0 else 1.4 if w % 4 == 0 else 1.9) * (1 + 0.02 * rng.standard_normal())
           for w in widths]
    result = analyse_widths(widths, saw)
    assert result.multiple == 8 and result.penalty[8] > 1.5
    smooth = analyse_widths(widths, [w * w * (1 + 0.002 * rng.standard_normal()) for w in widths])
    assert smooth.multiple == 1
    steps = analyse_widths(widths, [float(-(-w // 16)) + w / 1000 for w in widths])
    assert steps.multiple == 16


def test_the_table_cache_key_is_the_timing_settings_only():
    import dataclasses

    from deploypipe.hw.cache import target_key
    from deploypipe.targets import load_target

    cpu = load_target("cpu")
    same = dataclasses.replace(cpu, description="mine", same_speed_margin=0.1, round_to=16)
    assert target_key(same) == target_key(cpu)  # none of these changes what a timing measures
    assert target_key(dataclasses.replace(cpu, threads=3)) != target_key(cpu)
