"""Allocation under budgets: uniform, global ranking, rounding, impossible budgets."""
from __future__ import annotations

import numpy as np
import pytest

from deploypipe.errors import BudgetError, InputError
from deploypipe.prune.allocate import global_ranking, round_keep, select_drop, uniform
from deploypipe.prune.budget import Budget, allocate
from deploypipe.prune.state import GroupState


def test_round_keep_respects_multiple_and_bounds():
    assert round_keep(13, 64, 8) == 16
    assert round_keep(3, 64, 8) == 8  # never below one block
    assert round_keep(70, 64, 8) == 64
    assert round_keep(3, 6, 8) == 3  # narrower than a block: left as asked
    assert round_keep(0, 10, 1) == 1  # never zero


def test_uniform_keeps_prunable_share_and_leaves_frozen_alone():
    keep = uniform([16, 32, 10], 0.5, prunable=[True, True, False], round_to=8)
    assert keep.tolist() == [8, 16, 10]
    with pytest.raises(InputError):
        uniform([8], 1.5, prunable=[True])


def test_select_drop_removes_lowest_scores():
    drop = select_drop([np.array([5.0, 1.0, 3.0, 0.5])], [2])
    assert drop[0].tolist() == [1, 3]


def test_global_ranking_prefers_unimportant_groups_and_caps_each_group():
    scores = [np.linspace(1, 2, 10), np.linspace(0.001, 0.002, 10) * 1000]  # normalised by mean: same scale
    widths = [10, 10]
    keep = global_ranking(widths, scores, prunable=[True, True], cost=lambda k: float(sum(k)), target=10,
                          max_ratio=0.8)
    assert keep.sum() <= 10 and keep.min() >= 2


def test_global_ranking_under_rounding_prunes_groups_narrower_than_a_block_as_uniform_does():
    """Under x8, a group of 4 or 8 channels steps one channel at a time (``round_keep`` leaves it
    unrounded) and a group of 12 steps to 8: before, both were out of reach, and a small CNN that
    uniform pruned to 2x was refused by every global allocation ("at most 19% can be removed")."""
    widths = [4, 8, 12, 16]
    scores = [np.ones(w) for w in widths]
    cost = lambda k: float(np.sum(k))  # noqa: E731
    keep = global_ranking(widths, scores, prunable=[True] * 4, cost=cost, target=20, round_to=8)
    assert cost(keep) <= 20
    assert keep[2] in (8, 12) and keep[3] in (8, 16)  # wide groups keep multiples of 8 (or their width)
    assert keep[0] < 4 or keep[1] < 8  # the narrow groups gave channels too
    assert uniform(widths, 0.5, prunable=[True] * 4, round_to=8).tolist() == [2, 4, 8, 8]


def test_a_later_round_keeps_a_cut_wide_group_on_the_multiple():
    """In an iterative round the widths are the pruned model's: a dense 16 already at 8 is not
    a narrow group (it keeps 8 under x8), while a dense 8 steps a channel at a time."""
    scores = [np.ones(8), np.ones(8)]
    keep = global_ranking([8, 8], scores, prunable=[True, True], cost=lambda k: float(np.sum(k)), target=12,
                          round_to=8, dense=[16, 8])
    assert keep.tolist() == [8, 4]
    assert uniform([8, 8], 0.5, prunable=[True, True], round_to=8, dense=[16, 8]).tolist() == [8, 4]


def test_global_ranking_raises_when_budget_unreachable():
    with pytest.raises(BudgetError):
        global_ranking([4, 4], [np.ones(4), np.ones(4)], prunable=[True, False], cost=lambda k: float(sum(k)),
                       target=2, max_ratio=0.5)


@pytest.mark.parametrize("text,mode,value", [("0.5", "fraction", 0.5), ("2x", "reduction", 2.0),
                                              ("20M", "absolute", 20e6), ("1500", "absolute", 1500.0)])
def test_budget_parse_forms(text, mode, value):
    b = Budget.parse("macs", text)
    assert (b.mode, b.value) == (mode, value)
    assert b.target(100e6) == pytest.approx({"fraction": 50e6, "reduction": 50e6}.get(mode, value))


@pytest.mark.parametrize("kind,text", [("macs", "1"), ("macs", "0.5x"), ("macs", "-3"), ("ratio", "1.2"),
                                       ("macs", "lots"), ("volume", "0.5")])
def test_budget_parse_rejects_nonsense_in_one_sentence(kind, text):
    with pytest.raises(InputError) as e:
        Budget.parse(kind, text)
    assert "\n" not in str(e.value)


def _toy_cost():
    """Two groups feeding one another: MACs = 100 * w0 * w1 + 10 * w1."""
    class Cost:
        def macs(self, w):
            return 100.0 * w[0] * w[1] + 10.0 * w[1]

        params = macs
    return Cost()


def test_macs_budget_uniform_and_global_meet_the_target():
    cost = _toy_cost()
    widths, scores = [16, 16], [np.arange(16.0), np.arange(16.0)]
    dense = cost.macs(widths)
    for allocation in ("uniform", "global"):
        keep = allocate(GroupState(widths, scores, [True, True], cost=cost), Budget.parse("macs", "2x"),
                        allocation=allocation)
        assert cost.macs(keep) <= dense / 2
        assert cost.macs(keep) > dense / 4, "no more than needed"


def test_per_cost_allocation_ranks_importance_per_mac_saved():
    """Group 0's channels cost 100 MACs each, group 1's one MAC. Global ranking takes group 1's
    weakest channels first (half as important as any of group 0's) and saves almost nothing by
    it; per-cost pays for the budget with group 0, whose channels save 100x the MACs for at most
    twice the importance. Both meet the budget. Under a channel ratio every channel costs one:
    per-cost is then the ranking of the raw scores (group 1's mean is 10x group 0's, and it
    keeps more channels than the normalised global ranking lets it)."""
    class Cost:
        def macs(self, w):
            return 100.0 * w[0] + 1.0 * w[1]

        def marginal_macs(self, w):
            return np.array([100.0, 1.0])

    scores = [np.ones(16), np.linspace(0.5, 1.5, 16)]
    state = GroupState([16, 16], scores, [True, True], cost=Cost())
    budget = Budget.parse("macs", "2x")
    per_cost = allocate(state, budget, allocation="per-cost")
    plain = allocate(state, budget, allocation="global")
    for keep in (per_cost, plain):
        assert Cost().macs(keep) <= 808
    assert per_cost[1] == 16 and plain[1] < 16, (per_cost, plain)
    ratio = Budget.parse("ratio", "0.3")
    loud = GroupState([16, 16], [np.linspace(0.5, 1.5, 16), 10 * np.linspace(0.5, 1.5, 16)], [True, True],
                      cost=Cost())
    raw = allocate(loud, ratio, allocation="per-cost")
    assert raw.tolist() == global_ranking([16, 16], loud.scores, prunable=[True, True], target=0.7 * 32,
                                          cost=lambda w: float(np.sum(w)), normalize=False).tolist()
    assert raw[1] > allocate(loud, ratio, allocation="global")[1]
    with pytest.raises(InputError, match="per-cost"):
        allocate(state, budget, allocation="knapsack")


def test_impossible_macs_budget_says_how_far_it_can_go():
    cost = _toy_cost()
    with pytest.raises(BudgetError) as e:
        allocate(GroupState([16, 16], [np.ones(16)] * 2, [True, False], cost=cost), Budget.parse("macs", "100x"),
                 max_ratio=0.9)
    assert "at most" in str(e.value)


def test_floors_never_lose_more_than_max_ratio_and_round_up():
    from deploypipe.prune.allocate import floors

    keep = floors([96, 192, 576, 16, 6, 10], [True] * 5 + [False], 0.9, 8)
    assert keep.tolist() == [16, 24, 64, 8, 1, 10]  # ceil(0.1 w) = 10, 20, 58 rounded up; 6 < one block
    assert floors([20, 64], [True, True], 0.5, 8).tolist() == [16, 32]
    assert floors([100], [True], 0.5, 1).tolist() == [50]


@pytest.mark.parametrize("kind,text,cls", [("ratio", "0.3", "RatioBudget"), ("macs", "2x", "MacsBudget"),
                                           ("params", "20M", "ParamsBudget"), ("latency", "5ms", "LatencyMsBudget"),
                                           ("latency", "0.5", "LatencyRatioBudget")])
def test_each_budget_kind_is_its_own_class_with_the_same_report_dict(kind, text, cls):
    b = Budget.parse(kind, text)
    assert type(b).__name__ == cls and b.kind == kind
    assert Budget(**b.to_dict()) == b and set(b.to_dict()) == {"kind", "value", "mode"}
    assert b.needs_latency_table == (kind == "latency")


def test_a_ratio_budget_measures_prunable_channels_kept():
    state = GroupState([16, 32, 10], [np.ones(16), np.ones(32), np.ones(10)], [True, True, False])
    b = Budget.parse("ratio", "0.25")
    assert b.dense_value(state) == 48 and b.target(48) == 36
    assert b.met(state, np.array([12, 24, 10])) and not b.met(state, np.array([12, 25, 10]))
    assert b.met(state, np.array([14, 28, 10]), share=0.5)  # half of the way: 42 kept
