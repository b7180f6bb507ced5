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
from deploypipe.pipeline import BuildConfig, DataOptions, OutputOptions, PruneOptions, TrainOptions, build
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
    cfg = BuildConfig(f"zoo:{model}", budget=budget, data=DataOptions("digits", limit=200),
                      train=TrainOptions(epochs=1, pretrain_epochs=1, batch_size=32, distill=distill),
                      prune=PruneOptions("group_fisher", method_params=params, round_to=round_to),
                      output=OutputOptions(tmp_path / "run", progress=False), profile_iterations=3)
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
    losses = report["method"]["losses"]  # which loss each phase used: --distill is fine-tuning's only
    assert losses["scoring"] == losses["prune_training"] == "task loss (cross-entropy)"
    assert losses["finetune"].startswith("distillation from the dense model" if distill else "task loss")
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


# -- the memory divisor ---------------------------------------------------------------------
class _HandCounted(torch.nn.Module):
    """stem (3->4) -> BN -> ReLU = a; a -> conv1 (4->6) -> BN -> ReLU -> conv2 (6->4) -> BN,
    + a -> ReLU = b; maxpool(b) -> conv3 (4->5) -> BN -> ReLU -> global pool -> fc (5->3).
    8x8 inputs: stem, conv1 and conv2 write 8x8 maps, conv3 4x4."""

    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.stem, self.bn0 = nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)
        self.conv1, self.bn1 = nn.Conv2d(4, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6)
        self.conv2, self.bn2 = nn.Conv2d(6, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)
        self.pool = nn.MaxPool2d(2)
        self.conv3, self.bn3 = nn.Conv2d(4, 5, 3, padding=1, bias=False), nn.BatchNorm2d(5)
        self.gap, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(5, 3)

    def forward(self, x):
        a = torch.relu(self.bn0(self.stem(x)))
        b = torch.relu(self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(a))))) + a)
        c = torch.relu(self.bn3(self.conv3(self.pool(b))))
        return self.fc(torch.flatten(self.gap(c), 1))


def _hand_ctx(budget: Budget = Budget("ratio", 0.3)) -> PruneContext:
    torch.manual_seed(0)
    return PruneContext(TorchPruner(_HandCounted().eval(), (1, 3, 8, 8)), PruneRequest(budget=budget))


def _group_of(ctx: PruneContext, weight: str) -> int:
    return next(g.id for g in ctx.pruner.groups if any(m.tensor == weight for m in g.by_role("producer")))


def test_memory_divisor_is_the_papers_conv_outputs_on_a_hand_counted_model():
    """Per channel and sample: the residual stream's channel is written by the stem and by
    conv2, 2 x 8 x 8 = 128 elements (not the 464 of every tensor carrying it: stem, BN,
    ReLU, conv2, BN, Add, ReLU at 64 each and the 4x4 pool output); conv1's inner channel
    64 (not 192 with BN and ReLU); conv3's 4 x 4 = 16 (not 50 with BN, ReLU, pool, flatten)."""
    from deploypipe.prune.methods.group_fisher import GroupFisher, channel_cost

    ctx = _hand_ctx()
    stream, inner, last = (_group_of(ctx, w) for w in ("stem.weight", "conv1.weight", "conv3.weight"))
    assert _group_of(ctx, "conv2.weight") == stream
    widths = ctx.pruner.widths()
    memory = channel_cost(ctx, widths, GroupFisher.params["normalize"].default)
    assert GroupFisher.params["normalize"].default == "memory"
    assert [memory[stream], memory[inner], memory[last]] == [128.0, 64.0, 16.0]
    everything = channel_cost(ctx, widths, "memory_all")  # the former default, kept as an option
    assert [everything[stream], everything[inner], everything[last]] == [464.0, 192.0, 50.0]


def _schedule(ctx, *, normalize="none", d=3, per_step=1, events=0):
    from deploypipe.prune.methods.group_fisher import GroupFisherSchedule

    live = LiveChannels(ctx, per_sample=True)
    scores = FisherScores(live)
    return live, scores, GroupFisherSchedule(ctx, live, scores, d=d, normalize=normalize, per_step=per_step,
                                             slim_every=0, max_iterations=10_000, events=events)


def _steps(schedule, scores, n: int, state) -> None:
    """``n`` training steps as the loop drives them (one batch of scores each)."""
    for _ in range(n):
        scores.batches += 1
        schedule.on_step_end(state)


def test_group_fisher_removes_the_lowest_normalised_channel_every_d_iterations_and_resets():
    """d = 3: nothing goes after 2 steps; after the 3rd the channel with the least score
    per unit of memory goes (the stream's, 10/128, although conv1's 6/64 is smaller raw),
    and the accumulators restart from zero; 3 steps later the next lowest goes."""
    ctx = _hand_ctx()
    stream, inner = _group_of(ctx, "stem.weight"), _group_of(ctx, "conv1.weight")
    state = SimpleNamespace(stop=False, rebuild_optimizer=lambda: None)
    live, scores, schedule = _schedule(ctx, normalize="memory")
    try:
        for gid in scores.sums:
            scores.sums[gid][:] = 1e3
        scores.sums[stream][2], scores.sums[inner][4] = 10.0, 6.0
        _steps(schedule, scores, 2, state)
        assert all(a.all() for a in live.alive.values()) and scores.batches == 2
        _steps(schedule, scores, 1, state)
        assert not live.alive[stream][2] and sum(int((~a).sum()) for a in live.alive.values()) == 1
        assert scores.batches == 0 and all(not s.any() for s in scores.sums.values())  # reset
        for gid in scores.sums:
            scores.sums[gid][:] = 1e3
        scores.sums[inner][4] = 6.0
        _steps(schedule, scores, 2, state)
        assert live.alive[inner][4]
        _steps(schedule, scores, 1, state)
        assert not live.alive[inner][4] and schedule.removals == 2 and schedule.removed == 2
    finally:
        live.close()


def test_fit_schedule_event_j_makes_j_over_events_of_the_way_to_the_budget():
    """Ratio 0.5 of 56 prunable channels, 4 events of d = 2: 7 channels at each event,
    the budget met at the 4th, which ends the phase (round_to 1)."""
    ctx, _, _ = _fisher_setup()
    ctx.pruner.model.float()
    state = SimpleNamespace(stop=False, rebuild_optimizer=lambda: None)
    live, scores, schedule = _schedule(ctx, d=2, events=4)
    try:
        rng = np.random.default_rng(0)
        removed = []
        for _ in range(4):
            for gid in scores.sums:
                scores.sums[gid][:] = rng.random(len(scores.sums[gid]))
            _steps(schedule, scores, 2, state)
            removed.append(schedule.removed)
        assert removed == [7, 14, 21, 28] and state.stop and schedule.phase == "done"
        assert sum(ctx.pruner.widths()[g.id] for g in ctx.pruner.prunable) == 28  # sliced out at the end
    finally:
        live.close()
