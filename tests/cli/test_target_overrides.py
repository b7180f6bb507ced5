"""The target overrides trtexec users expect on build, profile, compare and lut: --shapes in
trtexec's and Polygraphy's syntax, --fp16/--int8/--fp32, --timing-cache."""
from __future__ import annotations

import argparse
import json

import pytest
import torch

from deploypipe.cli import main
from deploypipe.cli.args import add_target, parse_shapes, target_from_args
from deploypipe.errors import InputError
from deploypipe.models import create_model


@pytest.mark.parametrize("text,expected", [
    ("x:1x3x224x224,y:1x10", {"x": (1, 3, 224, 224), "y": (1, 10)}),
    ("x:[1,3,224,224]", {"x": (1, 3, 224, 224)}),
    ("input:[32, 3, 8, 8]", {"input": (32, 3, 8, 8)}),
    ("'in:0':2x3x8x8", {"in:0": (2, 3, 8, 8)}),
    ("in:0:[2,3,8,8] y:[1]", {"in:0": (2, 3, 8, 8), "y": (1,)}),
    ("1x3x32x32", {"": (1, 3, 32, 32)}),
    ("1,3,32,32", {"": (1, 3, 32, 32)}),
])
def test_trtexec_and_polygraphy_shapes(text, expected):
    assert parse_shapes(text) == expected


@pytest.mark.parametrize("text", ["x:", "x:1x0", "x:[a,b]", "x:1x2,x:1x2", ""])
def test_bad_shapes_are_one_sentence(text):
    with pytest.raises(InputError) as err:
        parse_shapes(text)
    assert "\n" not in err.value.sentence()


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_target(parser)
    return parser.parse_args(list(argv))


def test_overrides_change_precision_batch_shape_and_timing_cache(tmp_path):
    target = target_from_args(_args("--target", "gpu-trt-fp16", "--fp32", "--shapes",
                                    "input:[32,3,224,224]", "--timing-cache", str(tmp_path / "t")))
    assert (target.precision, target.batch, target.input_shape) == ("fp32", 32, (3, 224, 224))
    assert target.timing_cache == str(tmp_path / "t") and target.name == "gpu-trt-fp16"
    assert target_from_args(_args("--target", "gpu", "--int8")).precision == "int8"
    assert target_from_args(_args("--target", "cpu")) == target_from_args(_args())


@pytest.mark.parametrize("argv,match", [
    (("--target", "cpu", "--fp16"), "gain nothing from fp16"),
    (("--target", "torch-cuda", "--int8"), "no int8 path"),
    (("--shapes", "a:1x3x8x8,b:1x3x8x8"), "a target takes one input shape"),
])
def test_overrides_a_target_cannot_take_are_refused(argv, match):
    with pytest.raises(InputError, match=match):
        target_from_args(_args(*argv))


def test_profile_takes_shapes_as_trtexec_writes_them(tmp_path, capsys):
    model = tmp_path / "m.onnx"
    torch.save(create_model("test_resnet_cifar").state_dict(), tmp_path / "m.pt")
    assert main(["export", str(tmp_path / "m.pt"), "--arch", "test_resnet_cifar", "-o",
                 str(model), "--no-verify"]) == 0
    out = tmp_path / "p.json"
    assert main(["profile", str(model), "--shapes", "input:3x3x32x32", "--iterations", "3",
                 "--no-per-layer", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["batch"] == 3 and result["inputShapes"]["input"] == [3, 3, 32, 32]
    assert result["timing"] == "host wall clock per inference"
    capsys.readouterr()
    assert main(["profile", str(model), "--fp16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "runs ONNX Runtime on the CPU" in err[0]
    assert target_from_args(_args("--target", "cpu-batch32", "--int8")).precision == "int8"
