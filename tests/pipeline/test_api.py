"""``deploypipe.build`` from Python on a model defined here (not in the zoo), a plain
DataLoader and the caller's eval_fn: the pruned module, the ONNX files and the report agree."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import deploypipe
from deploypipe.errors import InputError
from deploypipe.models import create_model


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                                  nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))

    def forward(self, x):
        return self.head(self.body(x))


def _loaders():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.from_numpy((bunch.images / 16.0 - 0.3) / 0.4).float()[:, None]
    y = torch.from_numpy(bunch.target).long()
    train, test = TensorDataset(x[:1400], y[:1400]), TensorDataset(x[1400:], y[1400:])
    return DataLoader(train, batch_size=64, shuffle=True), DataLoader(test, batch_size=256)


def _trained(train) -> TinyNet:
    """TinyNet after 3 epochs of SGD on ``train`` (seeded), in eval mode."""
    torch.manual_seed(0)
    net = TinyNet()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    for _ in range(3):
        for xb, yb in train:
            opt.zero_grad()
            nn.functional.cross_entropy(net(xb), yb).backward()
            opt.step()
    return net.eval()


def test_python_api_builds_a_custom_model(tmp_path):
    train, test = _loaders()
    net = _trained(train)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    calls = []

    def eval_fn(model):
        calls.append(model)
        model.eval()
        with torch.no_grad():
            hits = sum(int((model(xb).argmax(1) == yb).sum()) for xb, yb in test)
        return hits / len(test.dataset)

    result = deploypipe.build(net, torch.randn(1, 1, 8, 8), train_loader=train, test_loader=test, eval_fn=eval_fn,
                              target="cpu-batch32", budget="macs:2x", epochs=1, output=tmp_path / "run")
    report = result.report
    # the caller's module is untouched; the result's is pruned
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    widths = lambda m: [c.out_channels for c in m.modules() if isinstance(c, torch.nn.Conv2d)]  # noqa: E731
    assert result.model is not net and sum(widths(result.model)) < sum(widths(net))
    # loaders and a MACs budget: the build's data-driven default, and the report says so
    assert (report.method.name, report.method.importance, report.method.allocation) == ("cpli", "fisher", "per-cost")
    assert report.method.chosen_by
    # the report's MACs are the pruned module's, and about half the dense ones
    assert report.dense.macs / report.pruned.macs >= 1.9
    # accuracies come from eval_fn: called on dense and pruned, and its value is the report's
    assert len(calls) >= 2 and report.pruned.accuracy == pytest.approx(eval_fn(result.model))
    assert report.dense.accuracy > 0.85 and report.verification.passed
    assert report.preprocessing["from"] == "as the caller's data gives it"
    # the pruned ONNX file computes what the pruned module computes
    x = next(iter(test))[0][:4]
    sess = ort.InferenceSession(str(result.pruned_onnx), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        want = result.model.eval()(x).numpy()
    assert np.allclose(got, want, atol=1e-4)
    onnx.checker.check_model(onnx.load(str(result.dense_onnx)))
    assert result.checkpoint is not None and result.checkpoint.exists()


def test_a_test_loader_alone_is_measured_on_and_never_trained_on(tmp_path):
    """Only a test set: accuracy is measured on it, and nothing is fine-tuned, scored, refit or
    BatchNorm-recalibrated on it (the build used to train on the images it then measured)."""
    train, test = _loaders()
    net = _trained(train)
    result = deploypipe.build(net, torch.randn(1, 1, 8, 8), test_loader=test, target="cpu-batch32",
                              output=tmp_path / "run")
    report = result.report
    assert (report.method.name, report.method.importance, report.method.allocation) == ("oneshot", "l1", "uniform")
    assert report.method.chosen_by is None and report.dense.accuracy > 0.85 and report.pruned.accuracy is not None
    # every number the pruned model holds is one the dense model held: it was only sliced
    dense = net.state_dict()
    for name, value in result.model.state_dict().items():
        if value.is_floating_point():
            assert torch.isin(value.flatten(), dense[name].flatten()).all(), name
    assert result.model.state_dict()["body.0.weight"].shape[0] < 32
    # iterative pruning fine-tunes between rounds when it can; here it only prunes
    steps = deploypipe.build(net, torch.randn(1, 1, 8, 8), test_loader=test, target="cpu-batch32", method="iterative",
                             output=tmp_path / "iterative").model.state_dict()
    assert all(torch.isin(v.flatten(), dense[k].flatten()).all() for k, v in steps.items() if v.is_floating_point())
    refused = tmp_path / "refused"
    for model, kwargs, needle in ((net, {"method": "cpli"}, "method 'cpli' trains or refits on images, .* "
                                                            "but only a test set was given"),
                                  (net, {"importance": "fisher"}, "by the loss on images, .* only a test set"),
                                  (net, {"method": "group_fisher"}, "method 'group_fisher' .* only a test set"),
                                  (net, {"epochs": 2}, "epochs=2 asks for fine-tuning"),
                                  (net, {"distill": True}, "distill=True distils"),
                                  (net, {"target": "cpu-int8"}, "quantizing to int8 calibrates on images"),
                                  ("zoo:test_resnet_cifar", {}, "the zoo trains the model first")):
        with pytest.raises(InputError, match=needle):
            deploypipe.build(model, torch.randn(1, 1, 8, 8), test_loader=test,
                             **{"target": "cpu-batch32", "output": refused, **kwargs})
        assert not refused.exists() or not any(refused.glob("*.onnx"))  # refused before any work
    # an ONNX file: no refit, the plainly pruned graph's accuracy measured on the test set
    onnx_run = deploypipe.build(str(result.dense_onnx), test_loader=test, target="cpu-batch32",
                                output=tmp_path / "onnx").report
    assert onnx_run.pruned.accuracy is not None and onnx_run.reconstruction is None
    assert onnx_run.dense.accuracy == pytest.approx(report.dense.accuracy, abs=1e-6)
    with pytest.raises(InputError, match="epochs=2 asks for fine-tuning, and an ONNX file is not fine-tuned"):
        deploypipe.build(str(result.dense_onnx), train_loader=train, test_loader=test, epochs=2,
                         target="cpu-batch32", output=refused)


def test_api_refuses_bad_inputs_in_one_sentence(tmp_path):
    with pytest.raises(InputError, match="not an nn.Module"):
        deploypipe.build(42, output=tmp_path / "a")
    with pytest.raises(InputError, match="names no budget kind"):
        deploypipe.build(TinyNet(), torch.randn(1, 1, 8, 8), budget="speed:2", output=tmp_path / "b")
    with pytest.raises(InputError, match="not \\(N, C, H, W\\)"):
        deploypipe.build(TinyNet(), torch.randn(8, 8), output=tmp_path / "c")


def test_prune_alone_in_memory():
    torch.manual_seed(0)
    net = TinyNet().eval()
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        before = net(x)
    result = deploypipe.prune(net, torch.randn(1, 1, 8, 8), budget="macs:2x", importance="l2")
    # met, and not overshot by more than one channel of this tiny model (each about 2% of its MACs)
    assert 2.0 <= result.macs_reduction <= 2.15
    assert any(p < d for d, p in result.widths)
    with torch.no_grad():
        assert torch.equal(net(x), before)  # the caller's model is untouched
        assert result.model(x).shape == (2, 10)
    with pytest.raises(InputError, match="measured on a target"):
        deploypipe.prune(net, torch.randn(1, 1, 8, 8), budget="latency:0.5")
    import importlib

    importlib.import_module("deploypipe.prune.budget")  # the subpackage, once imported, is still callable

    assert callable(deploypipe.prune)


def test_prune_with_data_re_estimates_batchnorm_statistics():
    """With a train_loader the pruned copy gets BatchNorm statistics of its own (bn_batches=0:
    the dense model's); the weights are the same either way."""
    train, test = _loaders()
    net = _trained(train)

    def accuracy(model) -> float:
        with torch.no_grad():
            return sum(int((model(xb).argmax(1) == yb).sum()) for xb, yb in test) / len(test.dataset)

    kept, fresh = (deploypipe.prune(net, torch.randn(1, 1, 8, 8), budget="macs:4x", train_loader=train, bn_batches=n)
                   for n in (0, 20))
    stale_state, fresh_state = kept.model.state_dict(), fresh.model.state_dict()
    assert all(torch.equal(v, fresh_state[k]) for k, v in stale_state.items() if "running" not in k and "tracked" not in k)
    assert not torch.equal(stale_state["body.4.running_mean"], fresh_state["body.4.running_mean"])
    assert accuracy(fresh.model) > accuracy(kept.model) + 0.05, (accuracy(fresh.model), accuracy(kept.model))


def test_per_cost_allocation_with_a_loss_criterion_meets_the_budget():
    """Taylor scores per MAC saved, on a trained model with data: the MACs budget is met (within
    the tiny model's channel steps), the widths are not the global ranking's, and a weight
    criterion is refused in one sentence."""
    train, _ = _loaders()
    net = _trained(train)
    x = torch.randn(1, 1, 8, 8)
    per_cost = deploypipe.prune(net, x, budget="macs:2x", importance="taylor", allocation="per-cost",
                                train_loader=train, bn_batches=0)
    ranked = deploypipe.prune(net, x, budget="macs:2x", importance="taylor", allocation="global",
                              train_loader=train, bn_batches=0)
    assert 2.0 <= per_cost.macs_reduction <= 2.15
    assert per_cost.widths != ranked.widths
    with pytest.raises(InputError, match="do not compare across layers"):
        deploypipe.prune(net, x, budget="macs:2x", importance="l2", allocation="per-cost")


def test_prune_alone_refuses_methods_that_train_and_runs_iterative_without_training():
    """``deploypipe.prune`` does not train: a method that prunes while it trains is refused in
    one sentence pointing to ``build`` (it said "pass --dataset" with a train_loader given);
    iterative pruning runs its rounds without fine-tuning between them (it crashed)."""
    train, _ = _loaders()
    net = TinyNet().eval()
    iterative = deploypipe.prune(net, torch.randn(1, 1, 8, 8), method="iterative", train_loader=train)
    assert iterative.macs_reduction >= 2.0
    for method in ("fbs", "cascade", "group_fisher", "increg"):
        with pytest.raises(InputError, match=r"deploypipe.prune\(\) does not train"):
            deploypipe.prune(net, torch.randn(1, 1, 8, 8), method=method, train_loader=train)


def _loader(x, y, batch_size=16):
    return DataLoader(TensorDataset(x, y), batch_size=batch_size)


class DictNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = TinyNet()

    def forward(self, x):
        return {"logits": self.net(x)}


def _raises_zero_division(model):
    return 1 / 0


X, Y = torch.randn(64, 1, 8, 8), torch.randint(0, 10, (64,))


@pytest.mark.parametrize("model,kwargs,needle", [
    (TinyNet, {"train_loader": _loader(X, torch.randint(10, 16, (64,)))}, "the labels run from 10 to 15, but the model has 10"),
    (TinyNet, {"train_loader": _loader(X, -torch.ones(64, dtype=torch.long))}, "negative label -1"),
    (TinyNet, {"train_loader": _loader(X, torch.rand(64) * 3)}, "not whole class numbers"),
    (TinyNet, {"train_loader": _loader(torch.randn(64, 3, 8, 8), Y), "example_inputs": None},
     "cannot run on the data's images of shape \\(3, 8, 8\\)"),
    (TinyNet, {"train_loader": _loader(X, Y), "test_loader": _loader(torch.randn(8, 1, 4, 4), Y[:8])},
     "test_loader \\(1, 4, 4\\)"),
    (TinyNet, {"train_loader": _loader(X, Y), "eval_fn": _raises_zero_division}, "eval_fn raised ZeroDivisionError"),
    (TinyNet, {"train_loader": _loader(X, Y), "eval_fn": lambda m: 85.0}, "eval_fn returned 85.0, not an accuracy"),
    (TinyNet, {"bogus": 1}, "build\\(\\) takes no option 'bogus'"),
    (DictNet, {"train_loader": _loader(X, Y)}, "the model returns a dict"),
])
def test_api_refuses_data_the_model_cannot_use_in_one_sentence(tmp_path, model, kwargs, needle):
    """The caller's data and functions are checked before any work, in one sentence each (these
    were IndexError, RuntimeError, ValueError, TypeError or AttributeError from inside)."""
    kwargs = {"example_inputs": torch.randn(1, 1, 8, 8), "epochs": 0, **kwargs}
    with pytest.raises(InputError, match=needle):
        deploypipe.build(model(), target="cpu-batch32", output=tmp_path / "run", **kwargs)
    assert not any((tmp_path / "run").glob("*.onnx"))


def test_api_takes_the_architecture_of_a_plain_state_dict(tmp_path):
    path = tmp_path / "sd.pt"
    torch.save(create_model("test_resnet_cifar").state_dict(), path)
    with pytest.raises(InputError, match="does not say its architecture"):
        deploypipe.build(path, output=tmp_path / "a")
    result = deploypipe.build(path, arch="test_resnet_cifar", target="cpu-batch32", output=tmp_path / "b")
    assert result.report.pruned.macs < result.report.dense.macs


@pytest.mark.parametrize("kwargs,needle", [
    ({"epochs": -1}, "epochs -1 must be a number at least 0"),
    ({"round_to": -8}, "round_to -8 must be a number at least 1"),
    ({"lr": 0}, "lr 0 must be a number above 0"),
    ({"batch_size": 0}, "batch_size 0 must be"),
    ({"label_smoothing": 1.5}, "label_smoothing 1.5"),
])
def test_api_holds_numbers_to_the_command_lines_limits(tmp_path, kwargs, needle):
    with pytest.raises(InputError, match=needle):
        deploypipe.build(TinyNet(), torch.randn(1, 1, 8, 8), output=tmp_path / "run", **kwargs)


@pytest.mark.parametrize("kwargs,needle", [
    ({"max_ratio": 1.5}, "max_ratio 1.5 must be strictly between 0 and 1"),
    ({"round_to": 0}, "round_to 0 must be a number at least 1"),
    ({"bn_batches": -1}, "bn_batches -1 must be"),
])
def test_prune_alone_holds_numbers_to_the_command_lines_limits(kwargs, needle):
    with pytest.raises(InputError, match=needle):
        deploypipe.prune(TinyNet(), torch.randn(1, 1, 8, 8), **kwargs)


def test_a_model_with_nothing_to_prune_is_refused_naming_what_froze_it():
    from deploypipe.errors import UnsupportedError

    only_logits = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3))  # its one group is the output's
    with pytest.raises(UnsupportedError, match=r"no prunable channel group: every group is frozen "
                                               r"\(it reaches graph output"):
        deploypipe.prune(only_logits, torch.randn(1, 3, 16, 16), budget="ratio:0.3")


@pytest.mark.parametrize("said,keywords,python", [
    ("pass --dataset, e.g. --dataset digits", {"dataset"}, "pass train_loader= (or dataset=)"),
    ("pass --dataset or --input-size and --in-channels", set(), "pass train_loader= or example_inputs="),
    ("ask for at least --latency-ratio 0.34, or allow more pruning per group with --max-ratio", {"budget"},
     "ask for at least budget='latency:0.34', or allow more pruning per group with --max-ratio"),
    ("pass --trust-model only if you trust its source, or load it with --arch", {"trust_model", "arch"},
     "pass trust_model=True only if you trust its source, or load it with arch="),
    ("use --method oneshot; --round-to 8; --target cpu-int8.", {"method", "round_to", "target"},
     "use method='oneshot'; round_to=8; target='cpu-int8'."),
])
def test_a_refusal_names_the_keyword_a_python_caller_would_change(said, keywords, python):
    from deploypipe.python_terms import in_python_terms

    assert in_python_terms(said, keywords) == python


def test_api_refusals_speak_python_not_command_line_flags(tmp_path):
    net = TinyNet()
    with pytest.raises(InputError) as refused:  # no data: was "pass --dataset"
        deploypipe.build(net, torch.randn(1, 1, 8, 8), method="cpli", output=tmp_path / "run")
    assert "train_loader=" in str(refused.value) and "--" not in str(refused.value)
    with pytest.raises(InputError) as refused:
        deploypipe.prune(net, torch.randn(1, 1, 8, 8), importance="fisher")
    assert "train_loader=" in str(refused.value) and "--dataset" not in str(refused.value)


def test_a_pickled_module_loads_with_trust_model_and_takes_its_shape_from_example_inputs(tmp_path):
    path = tmp_path / "whole.pt"
    torch.save(TinyNet(), path)  # the whole module pickled: loading it runs code from the file
    with pytest.raises(InputError, match=r"pass trust_model=True only if you trust its source"):
        deploypipe.build(path, torch.randn(1, 1, 8, 8), output=tmp_path / "refused")
    result = deploypipe.build(path, torch.randn(1, 1, 8, 8), trust_model=True, budget="ratio:0.25",
                              target="cpu-batch32", output=tmp_path / "run")
    assert result.report.pruned.macs < result.report.dense.macs and result.pruned_onnx.is_file()
    from deploypipe.checkpoint import load_model  # pruned.pt rebuilds from the class (it named no architecture)

    reloaded = load_model(result.checkpoint, arch=f"{TinyNet.__module__}:TinyNet").model.eval()
    x = torch.randn(4, 1, 8, 8)
    assert torch.allclose(reloaded(x), result.model.eval()(x), atol=1e-6)
