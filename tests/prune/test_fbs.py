"""FBS: the winner-take-all keeps exactly k channels per sample, the gated model equals the
dense one at density 1, its ONNX export matches PyTorch, dynamic MACs match a hand count,
group firing rates follow the producers, and static removal passes both oracles, alone
and through a whole build."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from deploypipe.graph import analyse, shrink, verify_shrink
from deploypipe.models import create_model
from deploypipe.pipeline import BuildConfig, DataOptions, OutputOptions, PruneOptions, TrainOptions, build
from deploypipe.prune.budget import Budget
from deploypipe.prune.fbs import (FiringStats, count_dynamic_macs, export_gated, firing_stats, fold_into,
                                  gate_model, group_rates, keep_count, static_drop, wta_mask)
from deploypipe.prune.methods import PruneContext, PruneRequest
from deploypipe.prune.torch_groups import TorchPruner, export_model
from deploypipe.train import Callback

SHAPE = (1, 1, 16, 16)


def _trained_looking(name: str, seed: int = 0) -> nn.Module:
    """A zoo model in eval mode with BN statistics and affine values that are not the
    init's (some gammas negative, so the sign folding is exercised)."""
    torch.manual_seed(seed)
    model = create_model(name, num_classes=5, in_channels=1, input_size=16)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(-1.0, 1.5)
                m.bias.uniform_(-0.5, 0.5)
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def _randomise_gates(gated, density: float, seed: int = 1) -> None:
    torch.manual_seed(seed)
    with torch.no_grad():
        for gate in gated.gates.values():
            gate.gate.weight.normal_(0.0, 1.0)
            gate.gate.bias.normal_(0.0, 0.5)
    gated.set_density(density)


# -- winner-take-all ------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 3, 5, 8])
def test_wta_keeps_exactly_k_largest_with_ties_to_the_lower_index(k):
    torch.manual_seed(0)
    g = torch.relu(torch.randn(64, 8))  # many exact zeros: ties
    g[0] = torch.tensor([0.5, 0.5, 0.5, 0.0, 0.0, 0.5, 0.0, 0.0])
    m = wta_mask(g, k)
    assert m.sum(dim=1).eq(k).all()
    kept_min = torch.where(m > 0, g, torch.full_like(g, math.inf)).min(dim=1).values
    dropped_max = torch.where(m > 0, torch.full_like(g, -math.inf), g).max(dim=1).values
    assert (kept_min >= dropped_max).all()
    expected_row0 = {1: [0], 3: [0, 1, 2], 5: [0, 1, 2, 3, 5], 8: list(range(8))}[k]
    assert torch.nonzero(m[0]).flatten().tolist() == expected_row0


def test_keep_count_is_the_papers_ceiling():
    assert [keep_count(d, 10) for d in (0.3, 0.5, 0.01, 1.0)] == [3, 5, 1, 10]
    assert keep_count(0.3, 64) == 20 and keep_count(0.5, 16) == 8


def test_gated_convs_keep_exactly_k_channels_per_sample_and_zero_the_rest():
    model = _trained_looking("test_resnet_cifar")
    gated = gate_model(model, SHAPE)
    _randomise_gates(gated, 0.3)
    outs = {}
    hooks = [g.register_forward_hook(lambda _m, _i, o, n=n: outs.__setitem__(n, o)) for n, g in gated.gates.items()]
    with torch.no_grad():
        gated.model(torch.randn(6, *SHAPE[1:]))
    for h in hooks:
        h.remove()
    assert len(gated.gates) == 9  # every conv + BN pair, stem and projections included
    for name, gate in gated.gates.items():
        k = math.ceil(0.3 * gate.channels)
        assert gate.mask.sum(dim=1).eq(k).all(), name
        off = (gate.mask == 0)[:, :, None, None].expand_as(outs[name])
        assert outs[name][off].abs().max() == 0, name


def test_density_one_is_the_dense_model_and_folding_back_is_exact():
    model = _trained_looking("test_resnet_cifar")
    gated = gate_model(model, SHAPE)
    x = torch.randn(4, *SHAPE[1:])
    with torch.no_grad():
        dense = model(x)
        assert torch.allclose(gated.model.eval()(x), dense, atol=1e-5)
    folded = create_model("test_resnet_cifar", num_classes=5, in_channels=1, input_size=16).eval()
    fold_into(folded, gated, firing_stats(gated, [(x, None)]))
    with torch.no_grad():
        assert torch.allclose(folded(x), dense, atol=1e-5)  # E[m g] = |gamma|, E[m] = 1 at density 1


# -- ONNX -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["test_resnet_cifar", "test_vgg", "test_resnet_bottleneck", "test_mobilenet_v2"])
def test_gated_onnx_matches_pytorch(tmp_path, name):
    gated = gate_model(_trained_looking(name), SHAPE)
    _randomise_gates(gated, 0.5)
    report = export_gated(gated, tmp_path / "gated.onnx")
    assert report.passed and report.max_abs < 1e-4, report.summary()
    import onnx

    ops = {n.op_type for n in onnx.load(str(tmp_path / "gated.onnx")).graph.node}
    assert {"ReduceMean", "Gemm", "ReduceSum"} <= ops  # the gate and the rank mask are in the graph


# -- dynamic MACs -----------------------------------------------------------------------------
class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1, self.relu1 = nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU()
        self.conv2, self.bn2, self.relu2 = nn.Conv2d(4, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), nn.ReLU()
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(6, 3)

    def forward(self, x):
        x = self.relu2(self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x))))))
        return self.fc(torch.flatten(self.pool(x), 1))


def test_dynamic_macs_match_a_hand_count():
    model = _Tiny().eval()
    gated = gate_model(model, (1, 1, 6, 6))
    with torch.no_grad():
        for gate in gated.gates.values():
            gate.gate.weight.zero_()
        gated.gates["conv1"].gate.bias.copy_(torch.tensor([0.5, 0.0, 0.9, 0.3]))
        gated.gates["conv2"].gate.bias.copy_(torch.tensor([0.2, 0.0, 0.0, 0.1, 0.0, 0.0]))
    gated.set_density(0.5)  # k = 2 of 4, 3 of 6
    dense = float(analyse(export_model(model, (1, 1, 6, 6))).macs)
    assert dense == 4 * 1 * 9 * 36 + 6 * 4 * 9 * 36 + 6 * 3
    macs = count_dynamic_macs(gated, [(torch.randn(3, 1, 6, 6), None)], dense)
    # conv1 computes channels 2 and 0 from the 1 image channel; conv2 keeps 0, 3 and (tie
    # at g = 0, lower index) 1, computes only 0 and 3, reading conv1's 2 kept channels;
    # the classifier is dense; the gates' FCs cost 1*4 + 4*6.
    hand = 2 * 1 * 9 * 36 + 2 * 2 * 9 * 36 + 6 * 3 + (1 * 4 + 4 * 6)
    assert macs.per_input.tolist() == [hand] * 3
    assert macs.gates == 28


def test_dynamic_macs_at_density_one_are_the_onnx_count_plus_gates():
    model = _trained_looking("test_resnet_cifar")
    gated = gate_model(model, SHAPE)
    dense = float(analyse(export_model(model, SHAPE)).macs)
    macs = count_dynamic_macs(gated, [(torch.randn(2, *SHAPE[1:]), None)], dense)
    assert macs.gates > 0 and macs.per_input.tolist() == [dense + macs.gates] * 2


def test_input_side_follows_relu_but_not_residual_sums():
    gated = gate_model(_trained_looking("test_resnet_cifar"), SHAPE)
    feeds = {s.name: s.feed for s in gated.sites}
    assert feeds == {"conv1": None, "layer1.0.conv1": "conv1", "layer1.0.conv2": "layer1.0.conv1",
                     "layer2.0.downsample.0": None, "layer2.0.conv1": None, "layer2.0.conv2": "layer2.0.conv1",
                     "layer3.0.downsample.0": None, "layer3.0.conv1": None, "layer3.0.conv2": "layer3.0.conv1"}


# -- static removal ---------------------------------------------------------------------------
def test_group_rate_is_the_largest_producer_rate_and_ungated_producers_block_removal():
    model = _trained_looking("test_resnet_cifar")
    gated = gate_model(model, SHAPE)
    pruner = TorchPruner(model, SHAPE)
    fired = {n: np.zeros(g.channels) for n, g in gated.gates.items()}
    fired["conv1"][:] = [10, 0, 3, 0]
    fired["layer1.0.conv2"][:] = [0, 0, 7, 1]
    rates, why = group_rates(pruner, gated, FiringStats(fired, fired, 10))
    stem = next(g.id for g in pruner.groups if any(m.tensor == "conv1.weight" for m in g.members))
    np.testing.assert_allclose(rates[stem], [1.0, 0.0, 0.7, 0.1])
    assert set(rates) == {g.id for g in pruner.prunable} and not why  # every producer is gated

    fc_group = next(g for g in pruner.groups if any(m.tensor == "fc.weight" and m.role == "producer"
                                                    for m in g.members))
    assert fc_group.id not in rates  # the classifier's outputs are frozen anyway


def test_static_drop_takes_the_rarest_within_floor_and_rounding():
    rates = {0: np.array([0.0, 0.5, 0.001, 0.002, 0.9, 0.0, 0.3, 0.0]), 1: np.array([0.0, 0.0, 0.0, 0.0])}
    widths, floors = np.array([8, 4]), np.array([1, 2])
    drop = static_drop(rates, widths, floors, threshold=0.01, round_to=1)
    assert drop[0].tolist() == [0, 2, 3, 5, 7] and drop[1].tolist() == [0, 1]  # group 1 keeps its floor of 2
    drop = static_drop(rates, widths, floors, threshold=0.01, round_to=4)
    assert drop[0].tolist() == [0, 2, 5, 7]  # 3 kept rounds up to 4: the least rare (3) stays
    assert 1 not in static_drop(rates, widths, floors, threshold=0.0, round_to=1)


@pytest.mark.parametrize("name", ["test_resnet_cifar", "test_mobilenet_v2"])
def test_static_removal_passes_both_oracles(name):
    model = _trained_looking(name)
    gated = gate_model(model, SHAPE)
    _randomise_gates(gated, 0.3)
    stats = firing_stats(gated, [(torch.randn(32, *SHAPE[1:]), None)])
    fold_into(model, gated, stats)
    pruner = TorchPruner(model, SHAPE)
    ctx = PruneContext(pruner, PruneRequest(budget=Budget("ratio", 0.5)), verify=True)
    rates, _ = group_rates(pruner, gated, stats)
    drop = static_drop(rates, pruner.widths(), np.ones(len(pruner.groups), dtype=int), threshold=0.25, round_to=1)
    assert sum(len(v) for v in drop.values()) > 0
    analysis = analyse(export_model(model, SHAPE))
    surgery = verify_shrink(analysis, shrink(analysis, drop), drop)  # shrunk graph == dead channels
    assert surgery.passed, surgery.sentence()
    ctx.prune(drop)  # torch slicing == ONNX surgery of the same model
    assert ctx.oracle["passed"] and ctx.oracle["max_abs"] < 1e-4
    assert ctx.pruner.analysis.macs < analysis.macs


def test_fbs_build_reports_dynamic_and_static_macs_and_verifies(tmp_path):
    params = {"density": "0.3", "warmup_epochs": "1", "joint_epochs": "1", "threshold": "0.6"}
    cfg = BuildConfig("zoo:test_resnet_cifar", data=DataOptions("digits", limit=200),
                      train=TrainOptions(epochs=1, pretrain_epochs=1, batch_size=32),
                      prune=PruneOptions("fbs", method_params=params, round_to=2),
                      output=OutputOptions(tmp_path / "run", progress=False), profile_iterations=3)
    report = build(cfg)
    r = report["rounds"][0]
    assert report["verification"]["passed"] and report["verification"]["oracle_max_abs"] < 1e-4
    assert r["gated_parity"]["passed"] and (tmp_path / "run" / "fbs_gated.onnx").is_file()
    assert r["channels_removed"] > 0 and r["static_macs"] == report["pruned"]["macs"] < report["dense"]["macs"]
    assert r["dynamic_macs"] < r["dense_macs"] == report["dense"]["macs"]
    assert r["dynamic"]["inputs"] == 200 and 0 <= r["gated_accuracy"] <= 1
    assert all(g["width_after"] % 2 == 0 or g["width_after"] == g["width_before"] for g in report["groups"])


# -- gate training: the loss's L1 term, the frozen warm-up, the density ramp ------------------
def _gated():
    torch.manual_seed(3)
    return gate_model(_trained_looking("test_resnet_cifar"), SHAPE, init_scale=0.1)


def _train_gates(gated, density: float, warmup: int, joint: int, *, ramp: float = 0.5, l1: float = 0.0,
                 steps: int = 2, callbacks=()):
    """``warmup`` + ``joint`` epochs of ``steps`` steps each on 64 synthetic images."""
    from deploypipe.data import load_dataset
    from deploypipe.prune.fbs import GateSchedule, train_gated
    from deploypipe.train import TrainConfig

    data = load_dataset("synthetic:classes=5,size=16,channels=1,n=64", seed=0)
    config = TrainConfig(epochs=1, batch_size=8, lr=0.05, progress=False, max_steps_per_epoch=steps)
    return train_gated(gated, data, config, GateSchedule(density, warmup, joint, ramp, l1), callbacks)


class _Probe(Callback):
    """Records ``fn(state)`` after every backward of the training it watches."""

    def __init__(self, fn):
        self.fn, self.rows = fn, []

    def on_after_backward(self, state):
        self.rows.append(self.fn(state))


def test_gate_warmup_trains_only_the_gates_and_keeps_the_bn_statistics():
    """Warm-up alone: every base weight, beta and BatchNorm statistic as it was; the gates'
    FCs moved. Joint training afterwards moves the base too."""
    gated = _gated()
    before = {k: v.clone() for k, v in gated.model.state_dict().items()}
    _train_gates(gated, 0.5, 1, 0)
    after = gated.model.state_dict()
    gate_keys = {k for k in before if ".gate." in k}
    assert gate_keys and all(not torch.equal(before[k], after[k]) for k in gate_keys if k.endswith("weight"))
    for k in before:
        if k not in gate_keys:
            assert torch.equal(before[k], after[k]), k  # conv weights, beta, running stats, fc
    _train_gates(gated, 0.5, 0, 1)
    assert not torch.equal(before["conv1.conv.weight"], gated.model.state_dict()["conv1.conv.weight"])


def test_density_falls_linearly_from_one_over_the_ramp_then_stays():
    """4 steps of warm-up and 4 joint, ramp 0.5: d falls over the first 4 steps, from 1 by
    (1 - 0.25) / 4 each, then holds at 0.25 (the density of each training forward)."""
    gated = _gated()
    gate = next(iter(gated.gates.values()))
    probe = _Probe(lambda state: (gate.density, int(gate.mask.sum(dim=1)[0])))
    _train_gates(gated, 0.25, 1, 1, ramp=0.5, steps=4, callbacks=[probe])
    assert [d for d, _ in probe.rows] == pytest.approx([1.0, 0.8125, 0.625, 0.4375, 0.25, 0.25, 0.25, 0.25])
    assert [k for _, k in probe.rows] == [keep_count(d, gate.channels) for d, _ in probe.rows]
    assert gated.density == 0.25


def test_saliency_l1_term_enters_the_training_loss_with_its_lambda():
    """loss - cross-entropy = lambda * mean over the batch of sum over gated convs of
    ||m * g||_1, at every step of both phases; without the term the difference is 0."""
    import torch.nn.functional as F

    for lam in (0.0, 1e-2):
        gated = _gated()
        probe = _Probe(lambda state: (float((state.loss - F.cross_entropy(state.outputs, state.targets)).detach()),
                                      sum(float(g.saliency.detach().sum(dim=1).mean()) for g in gated.gates.values())))
        _train_gates(gated, 0.5, 1, 1, l1=lam, callbacks=[probe])
        assert len(probe.rows) == 4
        for extra, l1 in probe.rows:
            assert l1 > 0 and extra == pytest.approx(lam * l1, rel=1e-4, abs=1e-6)


def test_fbs_build_is_the_same_whatever_the_callers_random_state(tmp_path):
    """The gates' random initialisation is seeded by the build's --seed, not drawn from the global RNG
    (random at each process start, or whatever a caller left): the same build of the same checkpoint
    twice gives the same pruned weights. Before, two identical CLI runs differed by 0.7 pt."""
    from deploypipe.checkpoint.save import save_checkpoint
    from deploypipe.models import create_model

    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "dense.pt", create_model("test_resnet_cifar", num_classes=10, in_channels=1,
                                                               input_size=8))
    params = {"density": "0.3", "warmup_epochs": "1", "joint_epochs": "1"}
    weights = []
    for caller_seed in (1, 2):
        torch.manual_seed(caller_seed)
        cfg = BuildConfig(str(ckpt), data=DataOptions("digits", limit=200),
                          train=TrainOptions(epochs=0, batch_size=32),
                          prune=PruneOptions("fbs", method_params=params, round_to=2),
                          output=OutputOptions(tmp_path / f"run{caller_seed}", progress=False), profile_iterations=3)
        build(cfg)
        weights.append(torch.load(tmp_path / f"run{caller_seed}" / "pruned.pt", weights_only=True)["state_dict"])
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
