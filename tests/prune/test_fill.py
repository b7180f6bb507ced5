"""Blocks given back after a rounded allocation: the budget is met closely, never exceeded."""
from __future__ import annotations

import numpy as np

from deploypipe.prune.fill import fill, score_value, uniform_value


def _cost(per_channel):
    per_channel = np.asarray(per_channel, dtype=np.float64)
    return lambda keep: float(np.dot(per_channel, keep))


def test_fill_meets_the_target_within_the_cheapest_block():
    widths = np.array([16, 64, 64, 128])
    cost = _cost([10.0, 3.0, 2.0, 1.0])
    keep = np.array([8, 24, 24, 48])  # a rounded allocation well under the target
    target = 0.5 * cost(widths)
    out = fill(widths, keep, [True] * 4, cost=cost, target=target, round_to=8, value=uniform_value(widths))
    assert cost(out) <= target
    assert target - cost(out) < 8 * 1.0 + 1e-9  # within one block of the cheapest group
    assert np.all(out % 8 == 0) and np.all(out >= keep) and np.all(out <= widths)


def test_uniform_fill_widens_the_most_cut_group_first():
    widths = np.array([16, 64])
    out = fill(widths, [8, 48], [True, True], cost=_cost([1.0, 1.0]), target=64, round_to=8,
               value=uniform_value(widths))
    assert list(out) == [16, 48]  # group 0 kept 50%, group 1 75%: group 0 widens


def test_global_fill_restores_the_most_important_block_and_skips_frozen():
    scores = [np.array([1.0, 1.0, 9.0, 9.0]), np.array([5.0, 5.0, 5.0, 5.0]), np.array([1.0] * 4)]
    out = fill([4, 4, 4], [2, 2, 2], [True, True, False], cost=_cost([1, 1, 1]), target=7, round_to=1,
               value=score_value(scores))
    assert list(out) == [2, 3, 2]  # group 0's next channel is a 1.0 (normalised 0.2), group 1's a 5.0 (1.0)


def test_a_group_narrower_than_a_block_widens_one_channel_at_a_time():
    """Under x8 a group of 8 is left unrounded by the allocation, so the fill gives it channels
    one by one (before, its next step was the whole group: 4 -> 8, over the budget, and nothing
    moved)."""
    out = fill([8, 16], [4, 8], [True, True], cost=_cost([1.0, 1.0]), target=13, round_to=8,
               value=uniform_value([8, 16]))
    assert list(out) == [5, 8]
