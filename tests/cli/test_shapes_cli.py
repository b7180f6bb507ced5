"""--shapes on the commands that read an ONNX graph, and the one sentence that names the
dynamic dims when they are missing (before, inspect printed 0.0 MMACs)."""
from __future__ import annotations

import json

import pytest
import torch

from deploypipe.cli import main
from deploypipe.models import create_model


@pytest.fixture(scope="module")
def dynamic_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp("dyn") / "dyn.onnx"
    model = create_model("test_resnet_cifar", num_classes=10, in_channels=3, input_size=16).eval()
    torch.onnx.export(model, (torch.randn(1, 3, 16, 16),), str(path), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch", 2: "height", 3: "width"}}, dynamo=False)
    return path


def test_dynamic_dims_are_named(dynamic_onnx, capsys):
    assert main(["inspect", str(dynamic_onnx)]) == 2
    err = capsys.readouterr().err
    assert "dynamic dim 0 'batch', dim 2 'height', dim 3 'width'" in err and "--shapes x:1x3x224x224" in err


@pytest.mark.parametrize("shapes", ["x:1x3x16x16", "x:[1,3,16,16]"])
def test_shapes_give_the_macs(dynamic_onnx, tmp_path, shapes):
    out = tmp_path / "g.json"
    assert main(["inspect", str(dynamic_onnx), "--shapes", shapes, "--json", str(out)]) == 0
    static = tmp_path / "s.json"
    assert main(["inspect", str(dynamic_onnx), "--shapes", "x:1x3x32x32", "--json", str(static)]) == 0
    macs16, macs32 = (json.loads(p.read_text())["macs"] for p in (out, static))
    assert macs16 > 0 and macs32 == pytest.approx(4 * macs16, rel=0.02)


def test_shrink_takes_shapes(dynamic_onnx, tmp_path, capsys):
    out = tmp_path / "small.onnx"
    assert main(["shrink", str(dynamic_onnx), "-o", str(out), "--ratio", "0.5", "--shapes", "x:1x3x16x16",
                 "--verify"]) == 0
    assert out.exists()
    assert main(["shrink", str(dynamic_onnx), "-o", str(tmp_path / "x.onnx"), "--ratio", "0.5",
                 "--shapes", "y:1x3x16x16"]) == 2
    assert "which" in capsys.readouterr().err
