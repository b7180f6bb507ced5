"""`deploypipe export`, `profile` and `list` in-process through deploypipe.cli.main."""
from __future__ import annotations

import json

import onnx
import pytest
import torch

from deploypipe.backends._gpu import gpu_missing_reason
from deploypipe.cli import main
from deploypipe.models import create_model

ARCH = "test_resnet_cifar"


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("deploypipe: error: ")
    return lines[0]


@pytest.fixture(scope="module")
def state_dict_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.pt"
    torch.save(create_model(ARCH).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory, state_dict_file):
    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    assert main(["export", str(state_dict_file), "--arch", ARCH, "-o", str(out), "--no-verify"]) == 0
    return out


# --- export -------------------------------------------------------------------------------

def test_export(state_dict_file, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert main(["export", str(state_dict_file), "--arch", ARCH, "-o", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "max abs error" in stdout and "max rel error" in stdout and "passed" in stdout
    assert f"wrote {out.resolve()}" in stdout
    proto = onnx.load(str(out))
    assert proto.graph.input[0].name == "input"
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert {i.name for i in proto.graph.initializer} >= {"conv1.weight", "bn1.running_mean"}


def test_export_from_a_checkpoint(tmp_path, capsys):
    from deploypipe.checkpoint import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "ckpt.pt", create_model(ARCH, in_channels=1, input_size=28))
    out = tmp_path / "m.onnx"
    assert main(["export", str(ckpt), "-o", str(out)]) == 0
    dims = onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims[1:]] == [1, 28, 28]  # the checkpoint's own input


def test_export_options(state_dict_file, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    code = main(["export", str(state_dict_file), "--arch", ARCH, "-o", str(out), "--opset", "13",
                 "--input-shape", "x:2x3x16x16", "--no-dynamic-batch", "--no-verify"])
    assert code == 0
    assert "not checked" in capsys.readouterr().out
    proto = onnx.load(str(out))
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [13]
    assert proto.graph.input[0].name == "x"
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] == [2, 3, 16, 16]


def test_export_refuses_to_overwrite_its_input(state_dict_file, capsys):
    before = state_dict_file.read_bytes()
    code = main(["export", str(state_dict_file), "--arch", ARCH, "-o", str(state_dict_file)])
    assert code == 2
    assert "is the input file" in _error_line(capsys)
    assert state_dict_file.read_bytes() == before


def test_export_missing_file(tmp_path, capsys):
    code = main(["export", str(tmp_path / "absent.pt"), "--arch", ARCH, "-o", str(tmp_path / "m.onnx")])
    assert code == 2
    _error_line(capsys)
    assert not (tmp_path / "m.onnx").exists()


def test_export_not_a_model(tmp_path, capsys):
    bad = tmp_path / "notes.pt"
    bad.write_text("not a model\n")
    code = main(["export", str(bad), "--arch", ARCH, "-o", str(tmp_path / "m.onnx")])
    assert code == 2
    _error_line(capsys)
    assert bad.read_text() == "not a model\n"


# --- profile ------------------------------------------------------------------------------

def test_profile(onnx_file, tmp_path, capsys):
    js = tmp_path / "p.json"
    code = main(["profile", str(onnx_file), "--target", "cpu", "--batch", "2", "--threads", "1",
                 "--iterations", "6", "--warmup", "1", "--json", str(js)])
    assert code == 0
    out = capsys.readouterr().out
    for word in ("median", "p90", "p95", "p99", "CV", "throughput", "machine:", "top"):
        assert word in out
    d = json.loads(js.read_text())
    assert d["batch"] == 2 and d["target"]["name"] == "cpu" and d["target"]["threads"] == 1
    assert d["latency"]["count"] == 6 and d["latency"]["medianMs"] > 0
    assert d["inputShapes"] == {"input": [2, 3, 32, 32]}
    assert d["layers"] and {"name", "timeMs", "averageMs", "medianMs", "percentage"} <= d["layers"][0].keys()
    assert d["fingerprint"]["key"] and d["fingerprint"]["logical_cores"] >= 1


def test_profile_without_layers(onnx_file, tmp_path, capsys):
    js = tmp_path / "p.json"
    assert main(["profile", str(onnx_file), "--no-per-layer", "--iterations", "3",
                 "--target", "cpu-batch32", "--json", str(js)]) == 0
    assert "top" not in capsys.readouterr().out
    d = json.loads(js.read_text())
    assert d["layers"] == [] and d["batch"] == 32


@pytest.mark.parametrize("content", [b"not onnx at all", b""])
def test_profile_not_onnx(tmp_path, capsys, content):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(content)
    assert main(["profile", str(bad)]) == 2
    assert "not an ONNX model" in _error_line(capsys)
    assert bad.read_bytes() == content


def test_profile_missing_file(tmp_path, capsys):
    assert main(["profile", str(tmp_path / "absent.onnx")]) == 2
    assert "does not exist" in _error_line(capsys)


def test_profile_json_onto_its_input(onnx_file, capsys):
    before = onnx_file.read_bytes()
    assert main(["profile", str(onnx_file), "--json", str(onnx_file)]) == 2
    assert "is the input file" in _error_line(capsys)
    assert onnx_file.read_bytes() == before


@pytest.mark.skipif(gpu_missing_reason() is None, reason="this machine has a GPU")
def test_profile_gpu_target_without_gpu(onnx_file, capsys):
    assert main(["profile", str(onnx_file), "--target", "gpu-trt-fp16"]) == 2
    assert "no NVIDIA GPU" in _error_line(capsys)


def test_profile_unknown_target(onnx_file, capsys):
    assert main(["profile", str(onnx_file), "--target", "cpux"]) == 2
    assert "did you mean cpu" in _error_line(capsys)


# --- list ---------------------------------------------------------------------------------

@pytest.mark.parametrize("what, expected", [
    ("archs", ["resnet18", "resnet50", "vgg16_bn", "mobilenet_v2"]),
    ("datasets", ["digits", "mnist", "synthetic"]),
    ("targets", ["cpu", "cpu-batch32", "gpu", "gpu-trt-fp16", "gpu-trt-int8", "jetson-orin", "torch-cuda"]),
    ("backends", ["onnxruntime", "tensorrt", "torch"]),
])
def test_list(what, expected, capsys):
    assert main(["list", what]) == 0
    out = capsys.readouterr().out
    names = [line.split()[0] for line in out.splitlines()]
    assert set(expected) <= set(names)
    assert all(len(line.split(None, 1)) == 2 for line in out.splitlines())  # name + description


def test_list_archs_hides_test_variants_unless_asked(capsys):
    main(["list", "archs"])
    assert "test_resnet" not in capsys.readouterr().out
    main(["list", "archs", "--all"])
    assert "test_resnet" in capsys.readouterr().out


@pytest.mark.parametrize("what", ["methods", "importance"])
def test_list_registries_written_elsewhere(what, capsys):
    assert main(["list", what]) == 0
    assert capsys.readouterr().out.strip()


def test_list_unknown_choice(capsys):
    assert main(["list", "nothing"]) == 2
    assert "invalid choice: 'nothing'" in _error_line(capsys)


@pytest.mark.parametrize("command", ["export", "profile", "list"])
def test_help(command, capsys):
    assert main([command, "--help"]) == 0
    assert command in capsys.readouterr().out


def test_export_of_a_zoo_name_says_to_train_it(tmp_path, capsys):
    assert main(["export", "zoo:resnet20", "-o", str(tmp_path / "m.onnx")]) == 2
    line = _error_line(capsys)
    assert "untrained zoo architecture" in line and "deploypipe train --arch resnet20" in line
    assert not (tmp_path / "m.onnx").exists()
