"""Preparing and running suites: interleaved rounds, every model kind, the run's record."""
from __future__ import annotations

import pytest
import torch

from deploypipe.bench import load_suite, resolve_target, run_suite
from deploypipe.bench.prepare import prepare_cases
from deploypipe.bench.runner import interleaved_rounds
from deploypipe.checkpoint import save_checkpoint
from deploypipe.errors import InputError
from deploypipe.export import export_onnx
from deploypipe.measure.fingerprint import hardware_fingerprint
from deploypipe.measure.stats import LatencyStats
from deploypipe.models import create_model
from deploypipe.targets import load_target


def test_rounds_interleave_every_case_in_a_fresh_order():
    calls: list[str] = []

    def measure(item):
        calls.append(item)
        return LatencyStats.from_samples([1.0])

    items = list("abcde")
    rounds = interleaved_rounds(items, 6, measure, seed=3)
    assert [len(r) for r in rounds] == [6] * 5
    per_round = [calls[i:i + 5] for i in range(0, 30, 5)]
    assert all(sorted(r) == items for r in per_round)  # each round times every case once
    assert len({tuple(r) for r in per_round}) > 1  # ... in orders that change
    calls.clear()
    interleaved_rounds(items, 6, measure, seed=3)
    assert [calls[i:i + 5] for i in range(0, 30, 5)] == per_round  # seeded


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    export_onnx(create_model("test_resnet_cifar"), folder / "net.onnx", input_shape=(1, 3, 32, 32))
    save_checkpoint(folder / "vgg.pt", create_model("test_vgg", input_size=16))
    return folder


def _suite(folder, body: str):
    path = folder / "suite.toml"
    path.write_text('targets = ["cpu-batch32", "cpu"]\nrepeats = 3\nwarmup = 1\n'
                    'iterations = 2\nbatches = [2]\n' + body)
    return load_suite(path)


def test_every_model_kind_becomes_cases(model_files):
    suite = _suite(model_files, """
[[models]]
onnx = "net.onnx"
[[models]]
checkpoint = "vgg.pt"
batches = [1, 3]
[[models]]
zoo = "test_mobilenet_v2"
shapes = [[3, 16, 16], [1, 24, 24]]
""")
    run = run_suite(suite)
    assert [c.id for c in run.cases] == [
        "net b2 3x32x32", "vgg b1 3x16x16", "vgg b3 3x16x16",
        "test_mobilenet_v2 b2 3x16x16", "test_mobilenet_v2 b2 1x24x24"]
    for case in run.cases:
        assert len(case.rounds) == 3 and all(r.n == 2 for r in case.rounds)
        assert all(r.batch == case.batch for r in case.rounds)
        assert len(case.onnx_sha256) == 64
    assert run.reference is not None and len(run.reference.rounds) == 3
    assert run.target_name == "cpu-batch32"  # the suite's first target
    assert run.fingerprint.key() == hardware_fingerprint().key()
    assert len(run.load_average["before"]) == 3
    summary = run.cases[0].summary("median")
    assert summary["throughput"] == pytest.approx(2000 / summary["medianMs"])


def test_zoo_exports_are_repeatable_and_leave_the_global_rng_alone(model_files, tmp_path):
    suite = _suite(model_files, '[[models]]\nzoo = "test_resnet"\n')
    target = load_target("cpu")
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    first = prepare_cases(suite, target, tmp_path / "a")
    assert torch.rand(1) == expected
    second = prepare_cases(suite, target, tmp_path / "b")
    assert [c.onnx_sha256 for c in first] == [c.onnx_sha256 for c in second]


def test_the_target_must_be_one_the_suite_lists(model_files):
    suite = _suite(model_files, '[[models]]\nonnx = "net.onnx"\n')
    assert resolve_target(suite, "cpu").name == "cpu"
    with pytest.raises(InputError, match="is for targets cpu, cpu-batch32, not 'gpu'"):
        resolve_target(suite, "gpu")


def test_an_onnx_model_with_open_dims_needs_a_shape(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "h", "w"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3, "h", "w"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "open.onnx")
    suite = _suite(tmp_path, '[[models]]\nonnx = "open.onnx"\n')
    with pytest.raises(InputError, match="open input dimensions"):
        prepare_cases(suite, load_target("cpu"), tmp_path)
    suite = _suite(tmp_path, '[[models]]\nonnx = "open.onnx"\nshapes = [[3, 5, 7]]\n')
    (case,) = prepare_cases(suite, load_target("cpu"), tmp_path)
    assert case.shape == (3, 5, 7)
    (timed,) = run_suite(suite).cases
    assert timed.id == "open b2 3x5x7" and len(timed.values("median")) == 3
