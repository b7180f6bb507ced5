"""CPLI: the least-squares refit against plain removal, the greedy selection's closed-form
increases against brute-force refits, feature-importance weights, the stage order, and
whole builds that meet their budget and pass build's verification (both oracles)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from deploypipe.models import create_model
from deploypipe.pipeline import BuildConfig, DataOptions, OutputOptions, PruneOptions, TrainOptions, build
from deploypipe.prune.budget import Budget
from deploypipe.prune.greedy import Problem, greedy_removal, kept_columns
from deploypipe.prune.methods._layerwise import output_weights, stage_order
from deploypipe.prune.methods.cpli import _predicted_keep
from deploypipe.prune.reconstruction import (LeastSquares, channel_columns, design_rows, output_rows,
                                             weight_matrix, write_weight)
from deploypipe.prune.torch_groups import TorchPruner


def _model(name: str = "test_resnet_cifar") -> TorchPruner:
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, in_channels=3, input_size=8)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.bias.uniform_(-0.5, 0.5)
    return TorchPruner(model.eval(), (1, 3, 8, 8))


def _io(module: torch.nn.Module, model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    seen = {}
    handle = module.register_forward_hook(lambda m, a, out: seen.update(x=a[0].detach(), y=out.detach()))
    with torch.no_grad():
        model(x)
    handle.remove()
    return seen["x"], seen["y"]


def test_refit_reconstructs_the_consumer_output_better_than_plain_removal():
    """On one fixed batch: drop half the input channels of a conv; the ridge refit's output
    error is well below plain removal's, and the statistics predict both errors exactly."""
    pruner = _model()
    group = next(g for g in pruner.prunable if len(pruner.consumers(g)) == 1 and g.width >= 4)
    consumer = pruner.consumers(group)[0]
    conv = consumer.module
    x_batch = torch.randn(16, 3, 8, 8)
    x, y = _io(conv, pruner.model, x_batch)
    stats = LeastSquares(conv.weight[0].numel(), conv.weight.shape[0])
    stats.add(design_rows(conv, x, None), output_rows(conv, y, None))
    drop = np.arange(group.width // 2)
    columns = channel_columns(consumer, group.width)
    kept = np.setdiff1d(np.arange(stats.dim), columns[drop].reshape(-1))
    prior = weight_matrix(conv)
    plain = np.zeros_like(prior)
    plain[kept] = prior[kept]
    coef = stats.solve(kept, prior, ridge=1e-4)

    def measured(coef: np.ndarray) -> float:
        write_weight(conv, coef)
        _, out = _io(conv, pruner.model, x_batch)
        return float(((out - y) ** 2).sum())

    e_plain, e_refit = measured(plain), measured(coef)
    assert e_refit < 0.8 * e_plain
    assert stats.error(plain) == pytest.approx(e_plain, rel=1e-3)
    assert stats.error(coef) == pytest.approx(e_refit, rel=1e-3, abs=1e-3)


def _synthetic(width: int = 4, k: int = 2, outputs: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.normal(size=(300, width * k))).float()
    t = x @ torch.from_numpy(rng.normal(size=(width * k, outputs))).float()
    stats = LeastSquares(width * k, outputs)
    stats.add(x, t)
    return stats, np.arange(width * k).reshape(width, k), rng.normal(size=(width * k, outputs)), rng.random(outputs)


def _objective(stats: LeastSquares, keep: np.ndarray, prior, weights, ridge: float) -> float:
    m, c = stats.system(prior, ridge)
    coef = stats.solve(keep, prior, ridge)
    return float(np.sum(weights * (np.einsum("do,de,eo->o", coef, m, coef) - 2 * np.einsum("do,do->o", coef, c))))


def test_greedy_increases_equal_brute_force_refits_before_and_after_a_downdate():
    stats, columns, prior, weights = _synthetic()
    problem = Problem(stats, columns, prior, weights, ridge=0.1)
    every = np.arange(stats.dim)
    base = _objective(stats, every, prior, weights, 0.1)
    brute = [(_objective(stats, np.setdiff1d(every, columns[c]), prior, weights, 0.1) - base) / problem.scale
             for c in range(4)]
    np.testing.assert_allclose(problem.increase(np.arange(4)), brute, rtol=1e-6)
    problem.remove(np.array([2]))
    rest = np.setdiff1d(every, columns[2])
    base = _objective(stats, rest, prior, weights, 0.1)
    brute = [(_objective(stats, np.setdiff1d(rest, columns[c]), prior, weights, 0.1) - base) / problem.scale
             for c in (0, 1, 3)]
    np.testing.assert_allclose(problem.increase(np.array([0, 1, 3])), brute, rtol=1e-6)
    assert kept_columns(problem, np.array([2])).tolist() == rest.tolist()


def test_greedy_removes_a_duplicated_channel_first_because_the_refit_absorbs_it():
    """Channel 1 repeats channel 0 and carries the largest weights: plain removal would
    lose most by dropping it, the refit loses nothing (channel 0 takes its place)."""
    rng = np.random.default_rng(1)
    base = rng.normal(size=(400, 3))
    x = torch.from_numpy(np.column_stack([base[:, 0], base[:, 0], base[:, 1], base[:, 2]])).float()
    w = np.array([[0.5], [3.0], [1.0], [1.0]])
    stats = LeastSquares(4, 1)
    stats.add(x, x @ torch.from_numpy(w).float())
    problem = Problem(stats, np.arange(4)[:, None], w, np.ones(1), ridge=1e-6)
    assert greedy_removal([problem], 4, 1).tolist() in ([0], [1])
    # the additive term decides when reconstruction is indifferent
    problem = Problem(stats, np.arange(4)[:, None], w, np.ones(1), ridge=1e-6)
    assert greedy_removal([problem], 4, 1, extra=np.array([0.0, 5.0, 0.0, 0.0])).tolist() == [0]


def test_feature_importance_suppresses_outputs_the_next_stage_will_remove():
    assert _predicted_keep(np.array([0.3, 0.1, 0.9, 0.2]), 2, 0.1).tolist() == [1.0, 0.1, 1.0, 0.1]
    pruner = _model("test_vgg")
    group = pruner.groups[1]  # produced by features.4, read by features.8
    weights = output_weights(pruner, "features.4.weight", group.width, {group.id: np.linspace(0, 1, group.width)})
    np.testing.assert_allclose(weights, np.linspace(0, 1, group.width))
    assert output_weights(pruner, "features.4.weight", group.width, {}).tolist() == [1.0] * group.width


def test_stages_run_from_input_to_output():
    pruner = _model("test_vgg")
    assert stage_order(pruner) == [g.id for g in pruner.prunable]  # features.0, .4, .8, .12, classifier.0
    order = stage_order(_model())
    assert order[0] == 0 and sorted(order) == [g.id for g in _model().prunable]


# -- whole builds ---------------------------------------------------------------------------
def _build(tmp_path, model: str, budget: Budget, epochs: int, params: dict | None = None, round_to: int = 1, **kw):
    cfg = BuildConfig(f"zoo:{model}", budget=budget, data=DataOptions("digits", limit=300),
                      train=TrainOptions(epochs=epochs, pretrain_epochs=2, batch_size=32, **kw),
                      prune=PruneOptions("cpli", method_params=params or {"samples": 64}, round_to=round_to),
                      output=OutputOptions(tmp_path / "run", progress=False), profile_iterations=3)
    return build(cfg)


@pytest.mark.parametrize("model", ["test_resnet_cifar", "test_vgg"])
def test_cpli_build_without_finetuning_meets_the_macs_budget_and_verifies(tmp_path, model):
    report = _build(tmp_path, model, Budget("macs", 2.0, "reduction"), epochs=0)
    assert report["verification"]["passed"] and report["verification"]["oracle_max_abs"] < 1e-4
    assert report["pruned"]["macs"] <= report["dense"]["macs"] / 2
    assert "finetune" not in [s["name"] for s in report["stages"]]
    stages = [r for r in report["rounds"] if r["method"] == "cpli"]
    assert stages and all(r["recon_error_refit"] <= r["recon_error_plain"] + 1e-9 for r in stages)
    assert any(r["consumers_refit"] > 0 for r in stages)


def test_cpli_build_with_distilled_finetuning_meets_a_params_budget(tmp_path):
    report = _build(tmp_path, "test_resnet_cifar", Budget("params", 0.6, "fraction"), epochs=1, distill=True,
                    round_to=2, params={"samples": 64, "lam": 0.5, "steps": 2})
    assert report["verification"]["passed"] and report["method"]["distill"]
    assert report["pruned"]["params"] <= 0.6 * report["dense"]["params"]
    assert "finetune" in [s["name"] for s in report["stages"]]
    for g in report["groups"]:
        assert g["width_after"] in (g["width_before"], 1) or g["width_after"] % 2 == 0, g


# -- how a stage puts its objective together --------------------------------------------------
@pytest.mark.parametrize("loss", ["fisher", "taylor"])
def test_stage_objective_is_reconstruction_plus_lam_loss_term_with_feature_importance_weights(monkeypatch, loss):
    """The first stage of a VGG (group 0, read by features.4, whose outputs are group 1,
    pruned next) hands greedy selection: one reconstruction problem per consumer, on the
    dense consumer's outputs; output weights 1 for the channels group 1 is predicted to
    keep (its top loss scores) and ``suppress`` for the rest; and lam x the group's loss
    scores (Fisher sum_n (dL_n/dm)^2, or Taylor |sum_n dL_n/dm|) normalised to sum 1.
    Dropping any of the three fails here."""
    import deploypipe.prune.methods.cpli as cpli_module
    from deploypipe.data import load_dataset
    from deploypipe.prune.importance import ImportanceContext, mask_gradients
    from deploypipe.prune.methods import PruneContext, PruneRequest, create_method
    from deploypipe.prune.methods._layerwise import calibration_batches
    from deploypipe.prune.methods.increg import channel_l1

    pruner = _model("test_vgg")
    data = load_dataset("synthetic:classes=5,size=8,channels=3,n=120", seed=0)
    ctx = PruneContext(pruner, PruneRequest(budget=Budget("ratio", 0.5)), data=data)
    lam, suppress = 0.7, 0.2
    batches = calibration_batches(ctx, 32)
    first, second, _ = mask_gradients(pruner, ImportanceContext(batches=batches))
    score = {gid: np.abs(first[gid]) if loss == "taylor" else second[gid] for gid in first}
    keep = ctx.keep_for(ctx.request.budget, channel_l1(pruner))
    conv = dict(pruner.model.named_modules())["features.4"]
    energy = torch.zeros(conv.out_channels, dtype=torch.float64)

    rows = []

    def square(module, args, out) -> None:
        energy.add_((out.double() ** 2).sum(dim=(0, 2, 3)))
        rows.append(out.shape[0] * out.shape[2] * out.shape[3])

    handle = conv.register_forward_hook(square)
    with torch.no_grad():
        for x, _ in batches:
            pruner.model.eval()(x)
    handle.remove()

    calls = []

    def spy(problems, width, count, extra=None, steps=32):
        calls.append((list(problems), width, count, np.array(extra)))
        return greedy_removal(problems, width, count, extra, steps)

    monkeypatch.setattr(cpli_module, "greedy_removal", spy)
    create_method("cpli", {"samples": 32, "positions": 0, "lam": lam, "suppress": suppress, "loss": loss}).run(ctx)
    problems, width, count, extra = calls[0]
    np.testing.assert_allclose(extra, lam * score[0] / score[0].sum(), rtol=1e-5)
    assert (width, count) == (len(score[0]), len(score[0]) - keep[0])
    assert len(problems) == 1 and problems[0].stats.rows == sum(rows) > 0  # every position
    np.testing.assert_allclose(problems[0].stats.energy, energy.numpy(), rtol=1e-4)  # dense outputs
    expected = _predicted_keep(score[1], int(keep[1]), suppress)
    np.testing.assert_allclose(problems[0].weights, expected)
    assert 0 < (expected == suppress).sum() < len(expected)
    assert ctx.losses["scoring"].startswith(f"reconstruction of the dense consumers' outputs + 0.7 x {loss.capitalize()}")


def test_select_importance_drops_the_lowest_scoring_channels_and_still_refits():
    """``select=importance``: each group loses exactly the channels the build's importance
    criterion scores lowest on the dense model (no greedy search), and the consumers are
    refitted, so the pruned model reconstructs the dense one better than plain removal."""
    from deploypipe.data import load_dataset
    from deploypipe.prune.methods import PruneContext, PruneRequest, create_method
    from deploypipe.prune.methods.increg import channel_l1

    data = load_dataset("synthetic:classes=5,size=8,channels=3,n=120", seed=0)
    x = data.train.tensors[0][:64]
    outputs = []
    for refit in (True, False):
        pruner = _model("test_vgg")
        with torch.no_grad():
            dense = pruner.model(x)
        scores = channel_l1(pruner)
        ctx = PruneContext(pruner, PruneRequest(budget=Budget("ratio", 0.5), importance="l1"), data=data)
        keep = ctx.keep_for(ctx.request.budget, scores)
        create_method("cpli", {"samples": 32, "select": "importance", "refit": refit}).run(ctx)
        for g in pruner.prunable:
            expected = np.sort(np.argsort(scores[g.id], kind="stable")[len(scores[g.id]) - int(g.width):])
            assert len(ctx.kept[g.id]) == keep[g.id]
            np.testing.assert_array_equal(np.sort(ctx.kept[g.id]), expected)
        with torch.no_grad():
            outputs.append(float(((pruner.model(x) - dense) ** 2).mean()))
    assert outputs[0] < 0.5 * outputs[1]


@pytest.mark.parametrize("param,value,says", [("select", "random", "greedy or importance"),
                                              ("loss", "hessian", "fisher or taylor")])
def test_select_and_loss_must_name_a_known_rule(param, value, says):
    from deploypipe.errors import InputError
    from deploypipe.prune.methods import PruneContext, PruneRequest, create_method

    ctx = PruneContext(_model("test_vgg"), PruneRequest(budget=Budget("ratio", 0.5)))
    with pytest.raises(InputError, match=says):
        create_method("cpli", {param: value}).run(ctx)
