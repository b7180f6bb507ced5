"""Suite files: the shipped ones load; every mistake is one sentence naming file and field."""
from __future__ import annotations

from pathlib import Path

import pytest

from deploypipe.bench import load_suite
from deploypipe.bench.suite import CHECKPOINT, ONNX, ZOO
from deploypipe.errors import InputError

SUITES = Path(__file__).resolve().parents[2] / "benchmarks" / "suites"

VALID = """
targets = ["cpu"]
[[models]]
zoo = "test_resnet_cifar"
"""


@pytest.mark.parametrize("path", sorted(SUITES.glob("*.toml")), ids=lambda p: p.name)
def test_shipped_suites_load(path):
    suite = load_suite(path)
    assert suite.models and suite.repeats >= 3 and suite.targets


def test_smoke_suites_differ_only_in_the_width_of_one_model():
    smoke, wide = load_suite(SUITES / "smoke.toml"), load_suite(SUITES / "smoke-regressed.toml")
    assert smoke.name == wide.name == "smoke"  # same case ids, so one baseline serves both
    assert [m.name for m in smoke.models] == [m.name for m in wide.models]
    changed = [(a.kwargs, b.kwargs) for a, b in zip(smoke.models, wide.models) if a != b]
    assert changed == [((("width_mult", 0.25),), (("width_mult", 1.0),))]


def test_defaults_and_fields(tmp_path):
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"not checked at load")
    path = tmp_path / "s.toml"
    path.write_text(VALID + """
name = "x"
kwargs = { num_classes = 5 }
shapes = [[3, 16, 16], [3, 32, 32]]
batches = [1, 4]
[[models]]
onnx = "m.onnx"
[gate]
statistic = "p90"
max_slowdown = 0.2
""")
    suite = load_suite(path)
    assert suite.name == "s" and suite.repeats == 10 and suite.warmup is None
    zoo, onnx = suite.models
    assert (zoo.name, zoo.kind, zoo.kwargs) == ("x", ZOO, (("num_classes", 5),))
    assert zoo.shapes == ((3, 16, 16), (3, 32, 32)) and zoo.batches == (1, 4)
    assert (onnx.name, onnx.kind, onnx.source) == ("m", ONNX, str(onnx_file.resolve()))
    assert suite.gate.statistic == "p90" and suite.statistic_given
    assert suite.gate.max_slowdown == 0.2 and suite.gate.reference


@pytest.mark.parametrize("text, field", [
    ("targets = ['cpu']", "models"),
    (VALID.replace('zoo = "test_resnet_cifar"', 'name = "a"'), "models[0].zoo"),
    (VALID + 'onnx = "x.onnx"', "models[0].zoo"),
    (VALID.replace("test_resnet_cifar", "resnet2O"), "models[0].zoo"),
    (VALID + "kwargs = { input_size = 64 }", "models[0].kwargs.input_size"),
    (VALID + "kwargs = { layers = [1, 2] }", "models[0].kwargs.layers"),
    (VALID + "arch = 'resnet20'", "models[0].arch"),
    (VALID + "shapes = [[3, 0, 32]]", "models[0].shapes"),
    (VALID + "batches = [0]", "models[0].batches"),
    (VALID + "colour = 'red'", "models[0].colour"),
    (VALID + '[[models]]\nzoo = "test_resnet_cifar"', "models[1].name"),
    (VALID.replace('zoo = "test_resnet_cifar"', 'onnx = "missing.onnx"'), "models[0].onnx"),
    (VALID.replace('zoo = "test_resnet_cifar"', 'checkpoint = "missing.pt"'),
     "models[0].checkpoint"),
    ("repeats = 2\n" + VALID, "repeats"),
    ("iterations = 0\n" + VALID, "iterations"),
    ("targets = ['cpux']\n[[models]]\nzoo = 'test_vgg'", "targets"),
    ("speed = 'fast'\n" + VALID, "speed"),
    (VALID + "[gate]\nstatistic = 'mean'", "gate.statistic"),
    (VALID + "[gate]\nconfidence = 1.5", "gate.confidence"),
    (VALID + "[gate]\nmax_slowdown = -0.1", "gate.max_slowdown"),
    (VALID + "[gate]\nthreshold = 0.1", "gate.threshold"),
    ("models = 3", "models"),
])
def test_mistakes_are_one_sentence_naming_file_and_field(tmp_path, text, field):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        load_suite(path)
    message = info.value.sentence()
    assert f"field '{field}'" in message, message
    assert str(path) in message and message.startswith("benchmark suite ")
    assert "\n" not in message and message.endswith(".")


def test_unreadable_files_are_one_sentence(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_suite(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("models = [")
    with pytest.raises(InputError, match="not valid TOML") as info:
        load_suite(bad)
    assert "\n" not in info.value.sentence()


def test_checkpoint_fields(tmp_path):
    (tmp_path / "m.pt").write_bytes(b"x")
    path = tmp_path / "s.toml"
    path.write_text('[[models]]\ncheckpoint = "m.pt"\narch = "resnet20"\ntrust = false\n')
    (spec,) = load_suite(path).models
    assert (spec.kind, spec.arch, spec.trust, spec.name) == (CHECKPOINT, "resnet20", False, "m")
