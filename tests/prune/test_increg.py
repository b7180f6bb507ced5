"""IncReg and GReg: the increment formula on a hand-worked example, ranking by running
average, the per-channel penalty gradient, GReg-2's late picking, and whole builds that
meet their budget and pass build's verification."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from deploypipe.models import create_model
from deploypipe.pipeline import BuildConfig, DataOptions, OutputOptions, PruneOptions, TrainOptions, build
from deploypipe.prune.budget import Budget
from deploypipe.prune.methods import PruneContext, PruneRequest
from deploypipe.prune.methods._live import LiveChannels
from deploypipe.prune.methods.increg import ChannelPenalty, GRegSchedule, IncRegSchedule, increg_delta
from deploypipe.prune.torch_groups import TorchPruner

A = 2.5e-4


def test_increg_delta_matches_the_hand_worked_example():
    """N_prune = 4, u = 0.25: alpha = ln(8)/4, N_c = ln(4)/alpha = 8/3, so
    exp(-alpha r) = 8^(-r/4) and, past N_c, exp(-alpha (2 N_c - r)) = 8^(-(16/3 - r)/4).
    r=0: A                                   = 2.5e-4
    r=1: A 8^(-1/4)  = 2.5e-4 * 0.5946036    = 1.4865089e-4
    r=2: A 8^(-1/2)  = 2.5e-4 * 0.3535534    = 8.838835e-5
    r=3: 2uA - A 8^(-7/12) = 1.25e-4 - 2.5e-4 * 0.2973018 = 5.067456e-5
    r=4: 2uA - A 8^(-1/3)  = 1.25e-4 - 2.5e-4 * 0.5       = 0 (delta changes sign at N_prune)
    r=5: 2uA - A 8^(-1/12) = 1.25e-4 - 2.5e-4 * 0.8408964 = -8.522410e-5
    """
    expected = [2.5e-4, 1.4865089e-4, 8.838835e-5, 5.067456e-5, 0.0, -8.522410e-5]
    got = increg_delta(np.arange(6), n_prune=4, u=0.25, a=A)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-12)
    assert 8 / 3 == pytest.approx(-math.log(0.25) / (math.log(8) / 4))


def _ctx():
    torch.manual_seed(0)
    model = create_model("test_resnet_cifar", num_classes=5, input_size=8)
    pruner = TorchPruner(model, (1, 3, 8, 8))
    return PruneContext(pruner, PruneRequest(budget=Budget("ratio", 0.5)))


def _state():
    return SimpleNamespace(stop=False, rebuild_optimizer=lambda: None)


def test_increg_grows_penalties_by_running_average_rank_and_removes_at_target():
    """Group 0 (4 channels), N_prune = 2: alpha = ln(8)/2, N_c = 4/3; the increment by
    position is [A, A/sqrt(8), 0, (0.5 - sqrt(2)) A < 0, clipped at lambda = 0].
    Rankings 1 and 2: L1 [1, 2, 3, 4] -> ranks [0, 1, 2, 3] -> lambda [2A, 2A/sqrt(8), 0, 0].
    Ranking 3: L1 [3, 2, 1, 4] -> ranks [2, 1, 0, 3], but the running averages
    [2/3, 1, 4/3, 3] keep the order [0, 1, 2, 3] -> lambda [3A, 3A/sqrt(8), 0, 0]
    (the current rank alone would have given channel 2 the increment A).
    Channel 0 passes the target 2.5 A and goes; N_prune counts down to 1."""
    ctx = _ctx()
    live = LiveChannels(ctx)
    gid = 0
    assert len(live.alive[gid]) == 4
    schedule = IncRegSchedule(ctx, live, {gid: 2}, u=0.25, a=A, target=2.5 * A, interval=1, slim_every=0,
                              max_iterations=100, name="increg")
    rankings = iter([np.array([1.0, 2.0, 3.0, 4.0])] * 2 + [np.array([3.0, 2.0, 1.0, 4.0])])
    schedule.alive_l1 = lambda: {gid: next(rankings)}
    state = _state()
    schedule.update(state)
    schedule.update(state)
    np.testing.assert_allclose(schedule.lam[gid], [2 * A, 2 * A / math.sqrt(8), 0, 0], rtol=1e-9, atol=1e-15)
    assert schedule.left[gid] == 2 and live.alive[gid].all()
    schedule.update(state)
    np.testing.assert_allclose(schedule.lam[gid], [3 * A, 3 * A / math.sqrt(8), 0, 0], rtol=1e-9, atol=1e-15)
    assert live.alive[gid].tolist() == [False, True, True, True]
    assert schedule.left[gid] == 1 and not state.stop
    schedule.finish(state, force=True)  # out of iterations: the highest penalty goes (channel 1)
    assert state.stop and ctx.pruner.widths()[gid] == 2
    assert ctx.kept[gid].tolist() == [2, 3]  # removed physically in one round
    assert ctx.rounds[-1]["channels_removed"] == 2 and ctx.rounds[-1]["method"] == "increg"


def test_greg2_picks_by_l1_after_the_uniform_penalty_not_before():
    """Uniform lambda 0.5 per update up to 1, then pick: the L1 order at that time decides
    ([4, 3, 2, 1] picks channels 2 and 3, not the initial lowest 0 and 1); the kept get
    ``recover``; the picked grow to the ceiling, and are removed."""
    ctx = _ctx()
    live = LiveChannels(ctx)
    gid = 0
    l1 = {"now": np.array([1.0, 2.0, 3.0, 4.0])}
    schedule = GRegSchedule(ctx, live, {gid: 2}, delta=1.0, ceiling=2.0, stabilize=0, mag_ratio=0.0,
                            pick_delta=0.5, pick_ceiling=1.0, recover=-0.1, interval=1, slim_every=0,
                            max_iterations=100, name="greg2")
    schedule.alive_l1 = lambda: {gid: l1["now"]}
    state = _state()
    schedule.update(state)
    np.testing.assert_allclose(schedule.lam[gid], [0.5] * 4)
    l1["now"] = np.array([4.0, 3.0, 2.0, 1.0])
    schedule.update(state)
    assert schedule.picked[gid].tolist() == [2, 3]
    np.testing.assert_allclose(schedule.lam[gid], [-0.1, -0.1, 1.0, 1.0])
    schedule.update(state)  # picked reach the ceiling 2; stabilize = 0: removed now
    assert state.stop and ctx.kept[gid].tolist() == [0, 1]


def test_channel_penalty_is_the_gradient_of_half_lambda_squared_norm_of_every_slice():
    ctx = _ctx()
    pruner, model = ctx.pruner, ctx.model
    group = pruner.prunable[1]
    lam = np.zeros(group.width)
    lam[[0, 2]] = [2.0, 0.5]
    penalty = ChannelPenalty(pruner)
    penalty.build({group.id: lam})
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    penalty.apply()
    got = {n: p.grad.clone() for n, p in model.named_parameters()}

    params = dict(model.named_parameters())
    model.zero_grad(set_to_none=True)
    total = 0.0
    for m in group.members:
        if m.tensor in params and m.kind not in ("bn_mean", "bn_var"):
            for c in (0, 2):
                idx = torch.as_tensor(m.indices([c]))
                total = total + 0.5 * lam[c] * params[m.tensor].index_select(m.axis, idx).pow(2).sum()
    total.backward()
    touched = 0
    for name, p in params.items():
        want = p.grad if p.grad is not None else torch.zeros_like(p)
        torch.testing.assert_close(got[name], want)
        touched += int(want.abs().sum() > 0)
    assert touched >= 3  # producer conv, BatchNorm and consumer slices at least


# -- whole builds ---------------------------------------------------------------------------
FAST = {"increg": {}, "greg1": {}, "greg2": {}}  # the default schedule=fit: within prune_epochs (10)


def _build(tmp_path, model: str, method: str, budget: Budget, round_to: int):
    cfg = BuildConfig(f"zoo:{model}", budget=budget, data=DataOptions("digits", limit=200),
                      train=TrainOptions(epochs=1, pretrain_epochs=1, batch_size=32),
                      prune=PruneOptions(method, method_params={**FAST[method], "slim_every": 4}, round_to=round_to),
                      output=OutputOptions(tmp_path / "run", progress=False), profile_iterations=3)
    return build(cfg)


def _check(report, tmp_path, method: str, round_to: int) -> None:
    assert report["verification"]["passed"]
    assert report["pruned"]["params"] < report["dense"]["params"]
    assert (tmp_path / "run" / "pruned.onnx").stat().st_size < (tmp_path / "run" / "dense.onnx").stat().st_size
    assert report["rounds"] and all(r["method"] == method and not r["forced"] for r in report["rounds"])
    for g in report["groups"]:
        before, after = g["width_before"], g["width_after"]
        assert after == before or before <= round_to or after % round_to == 0, g


@pytest.mark.parametrize("model,method", [("test_resnet_cifar", "increg"), ("test_mobilenet_v2", "increg"),
                                          ("test_resnet_cifar", "greg1"), ("test_mobilenet_v2", "greg2")])
def test_regularisation_build_meets_a_macs_budget_and_verifies(tmp_path, model, method):
    report = _build(tmp_path, model, method, Budget("macs", 2.0, "reduction"), 4)
    assert report["pruned"]["macs"] <= report["dense"]["macs"] / 2
    _check(report, tmp_path, method, 4)


def test_increg_build_meets_a_ratio_budget(tmp_path):
    report = _build(tmp_path, "test_resnet_cifar", "increg", Budget("ratio", 0.4), 1)
    kept = sum(g["width_after"] for g in report["groups"] if not g["frozen"])
    total = sum(g["width_before"] for g in report["groups"] if not g["frozen"])
    assert kept <= 0.6 * total + 1  # uniform allocation rounds each group to the nearest channel
    _check(report, tmp_path, "increg", 1)


@pytest.mark.parametrize("method", ["increg", "greg1", "greg2"])
def test_unreachable_budget_is_refused_before_training(method):
    from deploypipe.errors import BudgetError
    from deploypipe.prune.methods import create_method

    ctx = _ctx()
    ctx.request = PruneRequest(budget=Budget("macs", 500.0, "reduction"))
    with pytest.raises(BudgetError, match="budget"):
        create_method(method).run(ctx)  # no data given: it must fail on the budget first
