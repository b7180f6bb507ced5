"""Allocation under a latency budget: options, the coupled model, the knapsack answer."""
from __future__ import annotations

import numpy as np
import pytest

from deploypipe.errors import BudgetError
from deploypipe.hw import Coupling, GroupTable, LatencyAllocator, LatencyTable, TableSpec, measure_table
from deploypipe.hw.latency_allocator import layer_counts, undominated, width_options
from deploypipe.prune.allocate import select_drop
from deploypipe.prune.state import GroupState
from deploypipe.targets import load_target

from .conftest import MacsTimer


@pytest.mark.parametrize("dense,current,round_to,max_ratio,expected", [
    (32, 32, 8, 0.9, [8, 16, 24, 32]),
    (32, 32, 8, 0.5, [16, 24, 32]),
    (20, 20, 8, 0.9, [8, 16, 20]),
    (32, 24, 8, 0.9, [8, 16, 24]),  # after a round: never wider than now
    (6, 6, 8, 0.5, [3, 4, 5, 6]),  # no wider than one block: any width above the floor
])
def test_width_options(dense, current, round_to, max_ratio, expected):
    assert width_options(dense, current, round_to, max_ratio) == expected


def test_widths_that_buy_no_time_are_not_offered():
    latency = {8: 1.0, 16: 2.5, 24: 2.0, 32: 3.0}.get  # 16 measured slower than 24
    assert undominated([8, 16, 24, 32], latency) == [8, 24, 32]


@pytest.fixture(scope="module")
def macs_table(resnet_analysis, tmp_path_factory):
    spec = TableSpec(show_progress=False, use_cache=False)
    return measure_table(resnet_analysis, load_target("cpu"), spec, timer=MacsTimer())


def _random_widths(a, table, rng):
    w = a.widths().copy()
    for g in table.groups:
        w[g] = int(rng.integers(1, w[g] // 8 + 1)) * 8
    return w


def test_coupled_model_is_exact_where_latency_is_bilinear_and_additive_is_not(resnet_analysis, macs_table):
    a = resnet_analysis
    coupled = LatencyAllocator(macs_table, round_to=8, coupling=Coupling.of(a))
    additive = LatencyAllocator(macs_table, round_to=8)
    rng = np.random.default_rng(0)
    worst = 0.0
    for _ in range(10):
        w = _random_widths(a, macs_table, rng)
        truth = a.cost.macs(w) / 1e6
        assert coupled.predict(w) == pytest.approx(truth, rel=1e-9)
        worst = max(worst, abs(additive.predict(w) - truth) / truth)
    assert worst > 0.2  # double-counted Convs


@pytest.mark.parametrize("coupled,weighted", [(True, False), (False, False), (True, True)],
                         ids=["coupled", "additive", "coupled-layer-weights"])
def test_keep_meets_the_budget_keeps_a_block_and_beats_random_feasible_widths(resnet_analysis, macs_table, coupled,
                                                                             weighted):
    a = resnet_analysis
    alloc = LatencyAllocator(macs_table, round_to=8, coupling=Coupling.of(a) if coupled else None,
                             layers=layer_counts(a) if weighted else None)
    weight = layer_counts(a) if weighted else {}
    rng = np.random.default_rng(1)
    scores = [rng.random(g.width) + (g.id % 3) for g in a.groups]
    prunable = [g.prunable for g in a.groups]
    budget = 0.5 * macs_table.dense_ms
    keep = alloc.keep(GroupState(a.widths(), scores, prunable), budget)
    assert alloc.predict(keep) <= budget * (1 + 1e-9)
    assert all(k >= 8 and k % 8 == 0 for k, g in zip(keep, a.groups) if g.prunable)
    assert all(k == g.width for k, g in zip(keep, a.groups) if not g.prunable)
    norm = [weight.get(g, 1) * s / s.sum() for g, s in enumerate(scores)]
    value = lambda w: sum(np.sort(s)[::-1][:k].sum() for s, k in zip(norm, w))  # noqa: E731
    for _ in range(200):  # no random feasible allocation keeps more importance
        w = _random_widths(a, macs_table, rng)
        if alloc.predict(w) <= budget:
            assert value(w) <= value(keep) + 1e-6
    drop = select_drop(scores, keep)  # the channels kept are each group's most important
    for g, idx in drop.items():
        kept = np.setdiff1d(np.arange(len(scores[g])), idx)
        assert scores[g][kept].min() >= scores[g][idx].max()


def test_layer_weights_keep_residual_streams_at_least_as_wide_as_their_blocks(resnet_analysis, macs_table):
    """A residual stream lives in ~8 convolutions, an inner group in 2: without the layer
    weight the knapsack buys its latency cheaply and strips it first (stage 2 to 8 of 32
    channels, every inner group of the stage left at 32)."""
    a = resnet_analysis
    layers = layer_counts(a)
    rng = np.random.default_rng(1)
    scores = [rng.random(g.width) + 1 for g in a.groups]
    prunable = [g.prunable for g in a.groups]
    streams = [g for g in layers if layers[g] > 2 and prunable[g]]
    assert len(streams) == 3  # one per stage
    plain = LatencyAllocator(macs_table, round_to=8, coupling=Coupling.of(a))
    weighted = LatencyAllocator.for_model(macs_table, a, round_to=8)
    kept = {name: alloc.keep(GroupState(a.widths(), scores, prunable), 0.5 * macs_table.dense_ms) / a.widths()
            for name, alloc in (("plain", plain), ("weighted", weighted))}
    stages = [(s, [g for g in range(s + 1, e) if prunable[g]]) for s, e in zip(streams, streams[1:] + [len(a.groups)])]
    stripped = lambda k: [s for s, inner in stages if k[s] < np.mean(k[inner])]  # noqa: E731
    assert stripped(kept["plain"])  # the bias the weight removes
    assert stripped(kept["weighted"]) == []


def test_a_budget_below_the_fastest_is_one_sentence_with_the_number(resnet_analysis, macs_table):
    a = resnet_analysis
    alloc = LatencyAllocator(macs_table, round_to=8, coupling=Coupling.of(a))
    state = GroupState.of(a, [np.ones(g.width) for g in a.groups])
    fastest = alloc.predict(alloc.fastest(state))
    with pytest.raises(BudgetError) as exc:
        alloc.keep(state, fastest * 0.9)
    msg = exc.value.sentence()
    assert f"{fastest:.4g} ms" in msg and "\n" not in msg and msg.count(". ") == 0


def test_non_monotonic_widths_are_avoided():
    table = LatencyTable(10.0, {0: GroupTable(32, (8, 16, 24, 32), (1.0, 3.5, 3.0, 4.0)),
                                1: GroupTable(32, (8, 16, 24, 32), (1.0, 2.0, 3.0, 4.0))})
    alloc = LatencyAllocator(table, round_to=8)
    keeps = {int(alloc.keep(GroupState([32, 32], [np.ones(32), np.ones(32)], [True, True]), b)[0])
             for b in np.linspace(6.5, 10, 30)}
    assert 16 not in keeps and {8, 24, 32} & keeps


def _planned_context(budget: str):
    """A context for resnet20 with a latency budget and the knapsack's widths for it as the plan."""
    from deploypipe.models import create_model
    from deploypipe.prune.budget import Budget
    from deploypipe.prune.methods import PruneContext, PruneRequest
    from deploypipe.prune.torch_groups import TorchPruner

    pruner = TorchPruner(create_model("resnet20", in_channels=1), (1, 1, 8, 8))
    table = measure_table(pruner.analysis, load_target("cpu"), TableSpec(show_progress=False), timer=MacsTimer())
    ctx = PruneContext(pruner, PruneRequest(budget=Budget.parse("latency", budget), round_to=8))
    alloc = LatencyAllocator(table, round_to=8, coupling=Coupling.of(pruner.analysis))
    planned = alloc.keep(ctx.state(ctx.scores()), float(budget) * table.dense_ms)
    return ctx, alloc, planned, table


def test_keep_for_gives_a_latency_budget_the_plans_widths():
    """Every method reaches a latency budget's widths through PruneContext.keep_for: the plan's."""
    ctx, alloc, planned, table = _planned_context("0.6")
    with pytest.raises(Exception, match="needs a latency table"):
        ctx.keep_for(ctx.request.budget, ctx.scores())
    ctx.planned = planned
    keep = ctx.keep_for(ctx.request.budget, ctx.scores())
    assert list(keep) == list(planned)
    assert alloc.predict(keep) <= 0.6 * table.dense_ms * (1 + 1e-9)
    ctx.prune_to(ctx.request.budget)
    assert list(ctx.pruner.widths()) == list(keep)


def test_global_ranking_leaves_a_frozen_group_of_any_width_alone():
    """The MACs-global baseline (and --allocation global) with a 10-class head and round_to 8:
    rounding must not touch the frozen head, or surgery refuses to cut it."""
    from deploypipe.prune.allocate import global_ranking

    keep = global_ranking([32, 10], [np.arange(32.0), np.zeros(10)], prunable=[True, False],
                          cost=lambda k: float(k[0]), target=16, round_to=8)
    assert list(keep) == [16, 10]


def test_iterative_method_reaches_the_latency_budget_in_steps():
    """Methods that split the budget (iterative) step from the dense widths to the plan's."""
    from deploypipe.prune.methods import create_method

    ctx, alloc, planned, table = _planned_context("0.5")
    ctx.planned = planned
    dense = ctx.pruner.widths().copy()
    create_method("iterative", {"steps": "2"}).run(ctx)
    assert len(ctx.rounds) == 2
    assert list(ctx.pruner.widths()) == list(planned)
    assert alloc.predict(ctx.pruner.widths()) <= 0.5 * table.dense_ms * (1 + 1e-9)
    assert ctx.rounds[0]["macs"] > ctx.rounds[1]["macs"] and ctx.rounds[0]["macs"] < ctx.dense_cost.macs(dense)


def test_kept_value_is_the_share_of_importance_kept_per_layer():
    from deploypipe.hw.latency_allocator import kept_value

    assert kept_value(np.array([1.0, 3.0]), layers=2) == pytest.approx([1.5, 2.0])  # best channel first
    assert kept_value(np.zeros(4)) == pytest.approx([0.25, 0.5, 0.75, 1.0])  # no signal: by count
    wide, narrow = kept_value(np.ones(960)), kept_value(np.ones(16))
    assert wide[-1] == narrow[-1] == pytest.approx(1.0) and wide[7] < narrow[7]  # 8 channels of 960 vs of 16


def test_a_value_exponent_gives_diminishing_returns():
    """q = 2: 1 - (1 - share)^2. Keeping half a group is worth 3/4 of it, so a knapsack that
    has to cut two equal groups by half in all cuts both halfway rather than one to nothing."""
    from deploypipe.hw import knapsack
    from deploypipe.hw.latency_allocator import kept_value

    v = kept_value(np.ones(4), exponent=2.0)
    assert v == pytest.approx([1 - 0.75 ** 2, 0.75, 1 - 0.25 ** 2, 1.0])
    assert kept_value(np.ones(4), exponent=1.0) == pytest.approx(kept_value(np.ones(4)))
    costs = [[1.0, 2.0, 3.0, 4.0]] * 2  # two groups, 1 ms per channel, 4 ms to spend: half the channels
    linear = knapsack.solve(costs, [kept_value(np.ones(4))] * 2, 4.0)
    assert linear.value == pytest.approx(1.0)  # any split of the 4 channels is worth the same
    concave = knapsack.solve(costs, [kept_value(np.ones(4), exponent=2.0)] * 2, 4.0)
    assert list(concave.picks) == [1, 1] and concave.value == pytest.approx(1.5)  # 2 channels each
