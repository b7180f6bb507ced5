"""Group Fisher: the accumulated score against brute-force finite differences, the
normalised global choice, rounding to the channel multiple, and whole builds that meet
their budget and pass build's verification."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deploypipe.models import create_model
from deploypipe.pipeline import BuildConfig, build
from deploypipe.prune.budget import Budget
from deploypipe.prune.methods import PruneContext, PruneRequest
from deploypipe.prune.methods._live import LiveChannels
from deploypipe.prune.methods.group_fisher import (FisherScores, allowed_above, allowed_below, lowest_channel,
                                                   nearest_allowed, round_widths)
from deploypipe.prune.torch_groups import TorchPruner


def _fisher_setup(batch: int = 6):
    """A tiny ResNet in float64 and eval mode (per-sample losses independent of each other)."""
    torch.manual_seed(0)
    model = create_model("test_resnet_cifar", num_classes=5, input_size=8)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.bias.uniform_(-0.5, 0.5)
    pruner = TorchPruner(model.eval(), (1, 3, 8, 8))
    pruner.model.double()
    ctx = PruneContext(pruner, PruneRequest(budget=Budget("ratio", 0.5)))
    x = torch.randn(batch, 3, 8, 8, dtype=torch.float64)
    y = torch.arange(batch) % 5
    return ctx, x, y


def _accumulate(scores: FisherScores, model, x, y) -> None:
    """One training step's worth of the callback protocol, with the loop's batch-mean loss."""
    state = SimpleNamespace(inputs=x)
    scores.on_batch_begin(state)
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    scores.on_after_backward(state)
    scores.on_step_end(state)


def _per_sample_losses(live: LiveChannels, model, x, y, gid: int, c: int, value: float) -> np.ndarray:
    mask = torch.ones(len(live.alive[gid]), dtype=torch.float64)
    mask[c] = value
    live.masks.set(gid, mask)
    live.begin()
    with torch.no_grad():
        out = F.cross_entropy(model(x), y, reduction="none").numpy()
    live.masks.set(gid, torch.ones(len(mask)))
    return out


def test_fisher_score_matches_finite_differences_of_per_sample_losses():
    """s_c = sum_n (dL_n/dm_c)^2, with dL_n/dm_c by central differences of each sample's
    loss when channel c's mask moves around 1 (float64)."""
    ctx, x, y = _fisher_setup()
    model = ctx.model
    live = LiveChannels(ctx, per_sample=True)
    try:
        scores = FisherScores(live)
        _accumulate(scores, model, x, y)
        eps = 1e-5
        for gid in live.alive:
            for c in range(len(live.alive[gid])):
                up = _per_sample_losses(live, model, x, y, gid, c, 1 + eps)
                down = _per_sample_losses(live, model, x, y, gid, c, 1 - eps)
                expected = float(np.sum(((up - down) / (2 * eps)) ** 2))
                assert scores.sums[gid][c] == pytest.approx(expected, rel=1e-4, abs=1e-12), (gid, c)
        assert any(s.max() > 0 for s in scores.sums.values())
    finally:
        live.close()


def test_fisher_score_does_not_depend_on_the_batch_size():
    """The batch-mean loss scales mask gradients by 1/N; the score undoes it, so two
    half batches give the score of the whole batch."""
    ctx, x, y = _fisher_setup(batch=6)
    live = LiveChannels(ctx, per_sample=True)
    try:
        whole, halves = FisherScores(live), FisherScores(live)
        _accumulate(whole, ctx.model, x, y)
        _accumulate(halves, ctx.model, x[:3], y[:3])
        _accumulate(halves, ctx.model, x[3:], y[3:])
        for gid in whole.sums:
            np.testing.assert_allclose(halves.sums[gid], whole.sums[gid], rtol=1e-6, atol=1e-15)
    finally:
        live.close()


def test_slim_keeps_the_last_killed_channels_masked_and_revivable():
    ctx, _, _ = _fisher_setup()
    ctx.pruner.model.float()
    live = LiveChannels(ctx)
    try:
        gid = next(g for g, a in live.alive.items() if len(a) == 8)
        for c in (1, 5, 3):
            live.kill(gid, c)
        live.slim(keep_recent=2)
        assert ctx.pruner.widths()[gid] == 7 and ctx.kept[gid].tolist() == [0, 2, 3, 4, 5, 6, 7]
        assert live.killed[gid] == [4, 2]  # old channels 5 and 3, in kill order, new indices
        assert live.alive[gid].tolist() == [True, True, False, True, False, True, True]
        assert live.dead_count() == 2 and live.dead_count(keep_recent=2) == 0
        live.revive(gid, 1)
        assert live.alive[gid].tolist() == [True, True, True, True, False, True, True]
    finally:
        live.close()


def test_lowest_channel_divides_by_cost_and_respects_floors():
    sums = {0: np.array([4.0, 1.0, 9.0]), 1: np.array([2.0, 8.0])}
    alive = {0: np.ones(3, bool), 1: np.ones(2, bool)}
    cost = np.array([1.0, 4.0])
    assert lowest_channel(sums, alive, cost, floor=np.array([1, 1])) == (1, 0)  # 2/4 < 1/1
    assert lowest_channel(sums, alive, cost, floor=np.array([1, 2])) == (0, 1)  # group 1 at its floor
    alive[0][1] = False
    assert lowest_channel(sums, alive, cost, floor=np.array([1, 2])) == (0, 0)  # dead channels never chosen
    assert lowest_channel(sums, alive, cost, floor=np.array([2, 2])) is None


def test_allowed_widths_are_multiples_or_the_dense_width():
    assert allowed_below(16, 16, 8) == 8
    assert allowed_below(20, 20, 8) == 16  # the dense width need not be a multiple
    assert allowed_below(3, 4, 8) == 2  # narrower than one block: one channel at a time
    assert allowed_above(16, 20, 8) == 20 and allowed_above(20, 20, 8) is None and allowed_above(9, 16, 8) == 16
    assert nearest_allowed(13, 16, 8, ceiling=13) == 8  # 16 is nearer but needs 3 revived channels
    assert nearest_allowed(13, 16, 8, ceiling=16) == 16
    assert nearest_allowed(19, 20, 8, ceiling=20) == 20
    assert nearest_allowed(11, 16, 8, ceiling=16) == 8


def test_round_widths_rounds_to_nearest_then_lowers_the_cheapest_block_until_met():
    met = lambda w: w.sum() <= 17  # noqa: E731
    price = lambda g, target, low: (1.0 if g == 0 else 2.0,)  # noqa: E731  group 0 is cheaper to lower
    out = round_widths(np.array([7, 13, 3]), ceiling=np.array([8, 13, 3]), dense=np.array([8, 16, 3]),
                       floor=np.array([4, 4, 3]), groups=[0, 1], step=4, met=met, price=price)
    # nearest: 7 -> 8 (one revival), 13 -> 12; 23 > 17: group 0 to 4 (cheaper), 19 > 17: group 1 to 8
    assert out.tolist() == [4, 8, 3]
    # lowering group 0 (cheapest) overshoots; the narrow group 2 gets a revived channel back
    met = lambda w: 3 * w[0] + w[1] + w[2] <= 30  # noqa: E731
    price3 = lambda g, target, low: (float(g + 1),)  # noqa: E731
    out = round_widths(np.array([8, 12, 2]), ceiling=np.array([8, 12, 3]), dense=np.array([8, 16, 3]),
                       floor=np.array([4, 4, 1]), groups=[0, 1, 2], step=4, met=met, price=price3)
    assert out.tolist() == [4, 12, 3]  # 38 > 30 -> 26 by group 0 -> 27 with group 2 raised
    with pytest.raises(Exception, match="cannot meet"):
        round_widths(np.array([4, 4, 3]), np.array([4, 4, 3]), np.array([8, 16, 3]), np.array([4, 4, 3]),
                     [0, 1], 4, lambda w: w.sum() < 5, price)


# -- whole builds ---------------------------------------------------------------------------
def _build(tmp_path, model: str, budget: Budget, round_to: int, distill: bool = False, **params):
    cfg = BuildConfig(model=f"zoo:{model}", out_dir=tmp_path / "run", dataset="digits", method="group_fisher",
                      method_params=params, budget=budget, round_to=round_to, epochs=1, pretrain_epochs=1,
                      limit=200, profile_iterations=3, progress=False, batch_size=32, distill=distill)
    return build(cfg)


def _check(report, tmp_path, round_to: int) -> None:
    assert report["verification"]["passed"]
    assert report["pruned"]["params"] < report["dense"]["params"]
    assert (tmp_path / "run" / "pruned.onnx").stat().st_size < (tmp_path / "run" / "dense.onnx").stat().st_size
    assert report["rounds"] and all(r["method"] == "group_fisher" for r in report["rounds"])
    assert not report["rounds"][-1]["forced"]
    for g in report["groups"]:
        before, after = g["width_before"], g["width_after"]
        assert after == before or before <= round_to or after % round_to == 0, g


@pytest.mark.parametrize("model,normalize,distill", [("test_resnet_cifar", "memory", False),
                                                     ("test_mobilenet_v2", "macs", True)])
def test_group_fisher_build_meets_a_macs_budget_and_verifies(tmp_path, model, normalize, distill):
    report = _build(tmp_path, model, Budget("macs", 2.0, "reduction"), 4, distill, d=1, normalize=normalize,
                    slim_every=2)
    assert report["pruned"]["macs"] <= report["dense"]["macs"] / 2
    assert report["method"]["distill"] is distill
    _check(report, tmp_path, 4)
    assert len(report["rounds"]) >= 2  # slimmed while pruning, not only at the end


def test_group_fisher_build_meets_ratio_and_params_budgets(tmp_path):
    report = _build(tmp_path, "test_resnet_cifar", Budget("ratio", 0.4), 1, d=1, per_step=2)
    kept = sum(g["width_after"] for g in report["groups"] if not g["frozen"])
    total = sum(g["width_before"] for g in report["groups"] if not g["frozen"])
    assert kept <= 0.6 * total
    _check(report, tmp_path, 1)
    report = _build(tmp_path / "p", "test_resnet_cifar", Budget("params", 0.6, "fraction"), 2, d=1)
    assert report["pruned"]["params"] <= 0.6 * report["dense"]["params"]
    _check(report, tmp_path / "p", 2)


def test_unreachable_or_unsupported_budget_is_refused_before_training():
    from deploypipe.errors import BudgetError, InputError
    from deploypipe.prune.methods import create_method

    ctx, _, _ = _fisher_setup()
    ctx.request = PruneRequest(budget=Budget("macs", 500.0, "reduction"))
    with pytest.raises(BudgetError, match="max-ratio"):
        create_method("group_fisher").run(ctx)
    ctx.request = PruneRequest(budget=Budget("ratio", 0.5))
    with pytest.raises(InputError, match="normalisation"):
        create_method("group_fisher", {"normalize": "flops"}).run(ctx)
