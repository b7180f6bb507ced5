"""ONNX export over the whole zoo: ONNX Runtime agrees with PyTorch, torch parameter names
survive as initializer names, BatchNorm stays its own node, the opset is the one asked."""
from __future__ import annotations

import re

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from deploypipe import export as export_mod
from deploypipe.errors import InputError, UnsupportedError, VerificationError
from deploypipe.export import export_and_verify, export_onnx, verify_onnx
from deploypipe.models import create_model, list_models, model_info

ZOO = list_models(include_test=True)
BIG = ["resnet50", "vgg11_bn", "vgg16_bn"]  # also exported at 224 in the slow tier
SMALL = 32  # every zoo model at 32x32 keeps the default tier fast


def _one_sentence(msg: str) -> bool:
    return "\n" not in msg and msg.endswith(".") and not re.search(r"[.!?]\s+[A-Z]", msg)


def _float_state(model: nn.Module) -> set[str]:
    return {k for k, v in model.state_dict().items() if v.is_floating_point()}


def _export(name: str, tmp_path, size: int):
    c = model_info(name).default_input[0]
    model = create_model(name, input_size=size)
    info = export_onnx(model, tmp_path / f"{name}.onnx", input_shape=(1, c, size, size))
    return model, info, onnx.load(str(info.path))


@pytest.fixture(scope="module", params=ZOO)
def exported(request, tmp_path_factory):
    return _export(request.param, tmp_path_factory.mktemp(request.param), SMALL)


def test_parity_with_onnxruntime(exported):
    model, info, _ = exported
    report = verify_onnx(model, info.path, batch=2, trials=1)
    assert report.passed, report.summary()
    assert np.isfinite(report.max_abs)


def test_initializer_names_are_torch_names(exported):
    model, _, proto = exported
    assert {i.name for i in proto.graph.initializer} == _float_state(model)
    # equal-valued parameters (every fresh BatchNorm weight is 1) are not aliased
    assert not [n for n in proto.graph.node if n.op_type == "Identity"]


def test_batchnorm_nodes_kept(exported):
    model, _, proto = exported
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert n_bn > 0
    assert sum(n.op_type == "BatchNormalization" for n in proto.graph.node) == n_bn


def test_opset_and_dynamic_batch(exported):
    _, info, proto = exported
    assert info.opset == 17
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [17]
    assert info.input_names == ("input",) and info.output_names == ("logits",)
    assert info.input_shapes["input"][0] == "batch" and info.output_shapes["logits"][0] == "batch"
    assert info.seconds > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", BIG)
def test_big_models_at_224(name, tmp_path):
    model, info, proto = _export(name, tmp_path, 224)
    assert verify_onnx(model, info.path, batch=1, trials=1).passed
    assert {i.name for i in proto.graph.initializer} == _float_state(model)


@pytest.fixture()
def tiny():
    return create_model("test_resnet")


@pytest.mark.parametrize("opset", [13, 18])
def test_opset_as_asked(tiny, tmp_path, opset):
    info = export_onnx(tiny, tmp_path / "m.onnx", input_shape=(1, 3, 32, 32), opset=opset)
    proto = onnx.load(str(info.path))
    assert info.opset == opset
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [opset]


def test_opset_mismatch_fails_and_writes_nothing(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(export_mod, "_read_opset", lambda path: 99)
    dest = tmp_path / "m.onnx"
    with pytest.raises(UnsupportedError, match="opset 17 but the exporter wrote opset 99"):
        export_onnx(tiny, dest, input_shape=(1, 3, 32, 32))
    assert list(tmp_path.iterdir()) == []


def test_fixed_batch(tiny, tmp_path):
    info = export_onnx(tiny, tmp_path / "m.onnx", input_shape=(2, 3, 32, 32), dynamic_batch=False)
    assert info.input_shapes["input"] == (2, 3, 32, 32)
    assert verify_onnx(tiny, info.path, batch=5, trials=1).batch == 2


def test_custom_names(tiny, tmp_path):
    info = export_onnx(tiny, tmp_path / "m.onnx", input_shape=(1, 3, 32, 32),
                       input_name="x", output_name="y")
    assert (info.input_names, info.output_names) == (("x",), ("y",))


def test_module_modes_are_restored(tiny, tmp_path):
    tiny.train()
    tiny.bn1.eval()
    export_onnx(tiny, tmp_path / "m.onnx", input_shape=(1, 3, 32, 32))
    assert tiny.training and tiny.layer1.training and not tiny.bn1.training


def test_trained_statistics_exported(tiny, tmp_path):
    """BatchNorm running statistics are exported as they are, not reset or folded."""
    with torch.no_grad():
        tiny.bn1.running_mean.uniform_(-1, 1)
        tiny.bn1.running_var.uniform_(0.5, 2)
    info = export_onnx(tiny, tmp_path / "m.onnx", input_shape=(1, 3, 32, 32))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(str(info.path)).graph.initializer}
    assert np.array_equal(inits["bn1.running_mean"], tiny.bn1.running_mean.numpy())
    assert verify_onnx(tiny, info.path, trials=1).passed


def test_verification_catches_a_difference(tiny, tmp_path):
    info = export_onnx(tiny, tmp_path / "m.onnx", input_shape=(1, 3, 32, 32))
    with torch.no_grad():
        tiny.conv1.weight.mul_(1.5)
    report = verify_onnx(tiny, info.path)
    assert not report.passed and report.max_abs > report.atol
    assert report.passing_atol > report.atol
    with pytest.raises(VerificationError) as err:
        report.check()
    msg = err.value.sentence()
    assert f"{report.max_abs:.3g}" in msg and "would pass with atol" in msg
    assert _one_sentence(msg), msg


def test_passing_tolerances_are_tight(tiny, tmp_path):
    info = export_onnx(tiny, tmp_path / "m.onnx", input_shape=(1, 3, 32, 32))
    report = verify_onnx(tiny, info.path, atol=0.0, rtol=0.0)
    assert report.passing_atol == pytest.approx(report.max_abs)
    again = verify_onnx(tiny, info.path, atol=report.passing_atol, rtol=0.0)
    assert again.passed


def test_failed_verification_keeps_the_old_file(tiny, tmp_path, monkeypatch):
    dest = tmp_path / "m.onnx"
    dest.write_bytes(b"old")
    failing = export_mod.ParityReport(max_abs=1.0, max_rel=1.0, atol=1e-4, rtol=1e-3,
                                      passed=False, passing_atol=1.0, passing_rtol=1.0,
                                      trials=1, batch=2)
    monkeypatch.setattr(export_mod, "verify_onnx", lambda *a, **k: failing)
    with pytest.raises(VerificationError):
        export_and_verify(tiny, dest, input_shape=(1, 3, 32, 32))
    assert dest.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_export_and_verify(tiny, tmp_path):
    info, report = export_and_verify(tiny, tmp_path / "m.onnx", input_shape=(1, 3, 32, 32))
    assert info.path == tmp_path / "m.onnx" and info.path.is_file() and report.passed


def test_renamed_parameter_is_caught(tiny, tmp_path):
    info = export_onnx(tiny, tmp_path / "m.onnx", input_shape=(1, 3, 32, 32))
    proto = onnx.load(str(info.path))
    init = next(i for i in proto.graph.initializer if i.name == "conv1.weight")
    init.name = "onnx::Conv_123"
    with pytest.raises(VerificationError, match="conv1.weight -> onnx::Conv_123"):
        export_mod._check_param_names(proto, export_mod._named_tensors(tiny))


def test_bad_shapes(tiny, tmp_path):
    with pytest.raises(InputError, match="positive"):
        export_onnx(tiny, tmp_path / "m.onnx", input_shape=(1, 0, 32, 32))
    with pytest.raises(InputError, match="fails on an input of shape"):
        export_onnx(tiny, tmp_path / "m.onnx", input_shape=(1, 5, 32, 32))
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")  # tracing the program's batch guard
def test_torch_export_program(tiny, tmp_path):
    """A torch.export program's module refuses eval() and has a fixed batch."""
    program = torch.export.export(tiny.eval(), (torch.randn(1, 3, 32, 32),)).module()
    with pytest.raises(UnsupportedError, match="--no-dynamic-batch"):
        export_and_verify(program, tmp_path / "m.onnx", input_shape=(1, 3, 32, 32))
    assert not (tmp_path / "m.onnx").exists()
    info, report = export_and_verify(program, tmp_path / "m.onnx", input_shape=(1, 3, 32, 32),
                                     dynamic_batch=False)
    assert report.passed and info.input_shapes["input"] == (1, 3, 32, 32)
    names = {i.name for i in onnx.load(str(info.path)).graph.initializer}
    assert {"conv1.weight", "bn1.running_mean"} <= names
