"""Cascaded self-distillation: level placement, nested selection, the chain's saliency
being the gradient of each level's own distillation loss, pruning events that keep the
levels nested and meet their budgets, and whole builds that verify."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deploypipe.errors import InputError
from deploypipe.models import create_model
from deploypipe.pipeline import BuildConfig, DataOptions, OutputOptions, PruneOptions, TrainOptions, build
from deploypipe.prune.budget import Budget
from deploypipe.prune.methods import PruneContext, PruneRequest
from deploypipe.prune.methods.cascade import CascadeChain
from deploypipe.prune.nested import is_nested, level_budget, level_fractions, nested_select
from deploypipe.prune.torch_groups import ConsumerMasks, TorchPruner
from deploypipe.train import DistillConfig, TrainConfig, distillation_loss


def _ctx(budget: Budget = Budget("macs", 2.0, "reduction")) -> PruneContext:
    torch.manual_seed(0)
    model = create_model("test_resnet_cifar", num_classes=5, in_channels=3, input_size=8)
    return PruneContext(TorchPruner(model, (1, 3, 8, 8)), PruneRequest(budget=budget))


def test_levels_default_to_the_geometric_mean_and_read_explicit_positions():
    assert level_fractions(0) == [1.0]
    assert level_fractions(1) == [0.5, 1.0]
    assert level_fractions(2) == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert level_fractions(5, "0.6, 0.3") == [0.3, 0.6, 1.0]
    with pytest.raises(InputError, match="strictly between"):
        level_fractions(1, "1.0")
    b = level_budget(Budget("macs", 4.0, "reduction"), 100.0, 0.5)
    assert (b.kind, b.mode, b.value) == ("macs", "absolute", pytest.approx(50.0))  # sqrt(100 * 25)
    assert level_budget(Budget("ratio", 0.75), 1.0, 0.5).value == pytest.approx(0.5)  # keeps sqrt(0.25)
    with pytest.raises(InputError, match="latency"):
        level_budget(Budget("latency", 5.0, "ms"), 10.0, 0.5)


def test_nested_select_takes_a_subset_of_the_parent_and_revives_only_when_forced():
    parent = {0: np.array([1, 1, 1, 0, 1], bool)}
    current = {0: np.array([1, 0, 1, 1, 1], bool)}
    saliency = {0: np.array([5.0, 9.0, 1.0, 8.0, 3.0])}
    assert nested_select(parent, current, saliency, {0: 2})[0].tolist() == [1, 0, 0, 0, 1]  # 3 is not in parent
    assert nested_select(parent, current, saliency, {0: 4})[0].tolist() == [1, 1, 1, 0, 1]  # 1 revived
    assert nested_select(parent, current, saliency, {0: 9})[0].sum() == 4  # never more than the parent
    rng = np.random.default_rng(0)
    for _ in range(20):
        p = {0: rng.random(12) < 0.7}
        c = {0: rng.random(12) < 0.7}
        child = nested_select(p, c, {0: rng.random(12)}, {0: int(rng.integers(0, 12))})
        assert is_nested([p, child])


@pytest.mark.parametrize("assistants", [0, 1, 2])
def test_pruning_events_keep_the_levels_nested_and_meet_each_level_budget(assistants):
    ctx = _ctx()
    chain = CascadeChain(ctx, level_fractions(assistants), DistillConfig(), events=[1, 2, 3])
    rng = np.random.default_rng(assistants)
    try:
        for _ in range(3):
            chain.saliency = [{g: rng.random(w) for g, w in chain.widths.items()} for _ in chain.fractions]
            chain.event()
            assert is_nested(chain.levels)
    finally:
        chain.close()
    record = chain.record()
    macs = [level["macs"] for level in record["levels"]]
    assert record["nested"] and macs == sorted(macs, reverse=True) and macs[0] == ctx.dense_macs
    for level, t in zip(record["levels"][1:], chain.fractions):
        assert level["macs"] <= level_budget(ctx.request.budget, ctx.dense_macs, t).value + 1e-6
    assert macs[-1] <= ctx.dense_macs / 2


def test_each_level_is_scored_by_the_gradient_of_its_own_distillation_loss():
    """One training step of the chain (T, TA, S): the student's saliency equals
    |d/dm KD(TA -> S)| computed on its own, with the TA's logits as a constant."""
    ctx = _ctx()
    model = ctx.model.train()
    distill = DistillConfig(tau=2.0, alpha=0.7)
    chain = CascadeChain(ctx, [0.5, 1.0], distill, events=[10])
    rng = np.random.default_rng(0)
    for level in (1, 2):  # distinct nested levels, so the teacher-student pairs differ
        for gid, mask in chain.levels[level].items():
            parent = chain.levels[level - 1][gid]
            chain.levels[level][gid] = parent & (rng.random(len(mask)) < 0.8)
            chain.levels[level][gid][np.flatnonzero(parent)[0]] = True
    x, y = torch.randn(6, 3, 8, 8), torch.arange(6) % 5
    state = SimpleNamespace(net=model, inputs=x, targets=y, outputs=None, config=TrainConfig(epochs=1))
    torch.manual_seed(1)
    chain.on_batch_begin(state)
    state.outputs = model(x)
    (F.cross_entropy(state.outputs, y) + chain.extra_loss(state)).backward()
    chain.on_after_backward(state)
    with torch.no_grad():
        chain.use(1)
        assistant = model(x)
    leaves = chain.use(2)
    distillation_loss(model(x), assistant, y, distill).backward()
    chain.close()
    for gid, leaf in leaves.items():
        np.testing.assert_allclose(chain.saliency[1][gid], leaf.grad.abs().numpy(), rtol=1e-4, atol=1e-7)
    assert any(s.max() > 0 for s in chain.saliency[1].values())


def test_masks_switch_per_level_and_zero_masks_equal_removal():
    """The level masks are ConsumerMasks: a dead channel contributes nothing."""
    ctx = _ctx()
    chain = CascadeChain(ctx, [1.0], DistillConfig(), events=[1])
    gid = next(iter(chain.widths))
    chain.levels[1][gid][:] = False
    chain.levels[1][gid][0] = True
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        chain.use(1)
        masked = ctx.model.eval()(x)
        chain.use(0)
        full = ctx.model(x)
    chain.close()
    ctx.prune({gid: np.arange(1, chain.widths[gid])})
    with torch.no_grad():
        removed = ctx.model(x)
    torch.testing.assert_close(masked, removed, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(full, removed)
    assert not isinstance(ctx.model, ConsumerMasks)


# -- whole builds ---------------------------------------------------------------------------
def _build(tmp_path, budget: Budget, params: dict, **kw):
    cfg = BuildConfig("zoo:test_resnet_cifar", budget=budget, data=DataOptions("digits", limit=300),
                      train=TrainOptions(epochs=2, pretrain_epochs=2, batch_size=32, **kw),
                      prune=PruneOptions("cascade", method_params=params, round_to=1),
                      output=OutputOptions(tmp_path / "run", progress=False), profile_iterations=3)
    return build(cfg)


def test_cascade_build_meets_the_macs_budget_and_verifies(tmp_path):
    assistants = 1
    report = _build(tmp_path, Budget("macs", 2.0, "reduction"), {"assistants": assistants, "events": 3})
    assert report["verification"]["passed"] and report["verification"]["oracle_max_abs"] < 1e-4
    assert report["pruned"]["macs"] <= report["dense"]["macs"] / 2
    assert "finetune" not in [s["name"] for s in report["stages"]]  # its own training replaces it
    last = report["rounds"][-1]
    assert last["method"] == "cascade" and last["nested"] and len(last["levels"]) == assistants + 2
    assert last["levels"][-1]["macs"] == report["pruned"]["macs"]


def test_cascade_build_with_two_placed_assistants_and_distillation_meets_a_ratio_budget(tmp_path):
    report = _build(tmp_path, Budget("ratio", 0.4), {"levels": "0.3,0.6", "bn_batches": 2}, distill=True)
    for g in report["groups"]:  # the uniform allocation: 40% of every prunable group, rounded
        expected = g["width_before"] if g["frozen"] else int(np.floor(g["width_before"] * 0.6 + 0.5))
        assert g["width_after"] == expected, g
    assert report["verification"]["passed"] and report["method"]["distill"]
    last = report["rounds"][-1]
    assert [level["t"] for level in last["levels"]] == [0.0, 0.3, 0.6, 1.0] and last["nested"]


# -- distinct levels ----------------------------------------------------------------------------
def test_assistant_moves_off_the_students_widths_when_rounding_collapses_the_geometric_mean():
    """Ratio 0.3, multiples of 4: the allocation at t = 1/2 gives exactly the student's
    widths (a teacher -> student cascade with a duplicate). The assistant goes to the
    nearest position whose widths differ from both, and after the pruning events the
    chain's levels are distinct, nested and strictly cheaper level by level."""
    from deploypipe.prune.methods.cascade import place_levels
    from deploypipe.prune.methods.increg import channel_l1

    ctx = _ctx(Budget("ratio", 0.3))
    ctx.request = PruneRequest(budget=Budget("ratio", 0.3), round_to=4)
    scores = channel_l1(ctx.pruner)
    student = ctx.keep_for(ctx.request.budget, scores)
    assert (ctx.keep_for(level_budget(ctx.request.budget, 1.0, 0.5), scores) == student).all()
    fractions = place_levels(ctx, level_fractions(1))
    assistant = ctx.keep_for(level_budget(ctx.request.budget, 1.0, fractions[0]), scores)
    assert fractions[-1] == 1.0 and 0.0 < fractions[0] < 1.0 and abs(fractions[0] - 0.5) < 0.1
    assert not (assistant == student).all() and not (assistant == ctx.pruner.widths()).all()
    chain = CascadeChain(ctx, fractions, DistillConfig(), events=[1, 2], requested=level_fractions(1))
    try:
        rng = np.random.default_rng(0)
        for _ in range(2):
            chain.saliency = [{g: rng.random(w) for g, w in chain.widths.items()} for _ in chain.fractions]
            chain.event()
    finally:
        chain.close()
    record = chain.record()
    channels = [level["channels"] for level in record["levels"]]
    assert record["distinct"] and record["nested"] and channels == sorted(set(channels), reverse=True)
    assert [level["t_requested"] for level in record["levels"]] == [0.0, 0.5, 1.0]


def test_assistants_the_rounding_cannot_place_are_refused_in_one_sentence():
    """Ratio 0.15, multiples of 4: every level between teacher and student rounds to one
    of them (the 16- and 8-wide groups keep their width, the 4-wide ones lose one)."""
    from deploypipe.errors import BudgetError
    from deploypipe.prune.methods.cascade import place_levels

    ctx = _ctx(Budget("ratio", 0.15))
    ctx.request = PruneRequest(budget=Budget("ratio", 0.15), round_to=4)
    with pytest.raises(BudgetError, match="allows 0 such level") as err:
        place_levels(ctx, level_fractions(1))
    assert "assistants=0" in err.value.hint
    assert place_levels(ctx, level_fractions(0)) == [1.0]  # direct distillation needs no placement
