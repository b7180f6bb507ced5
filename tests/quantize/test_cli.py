"""`deploypipe quantize model.onnx --dataset SPEC -o out.onnx`."""
from __future__ import annotations

import json

import onnx
import pytest
from onnx import TensorProto, helper

from deploypipe.cli import main
from deploypipe.quantize import has_qdq


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_quantize_writes_a_verified_qdq_model(resnet20_onnx, tmp_path, capsys):
    out, js = tmp_path / "m.int8.onnx", tmp_path / "q.json"
    code, stdout, _ = run(capsys, "quantize", resnet20_onnx, "--dataset", "digits", "-o", out,
                          "--calibration-batches", "2", "--json", js)
    assert code == 0 and has_qdq(onnx.load(str(out)))
    assert "22 of 22 Conv/Gemm layers in int8" in stdout and "top-1 agreement" in stdout and "MB on disk" in stdout
    result = json.loads(js.read_text())
    assert result["calibration"]["images"] == 128 and result["verification"]["passed"]
    assert result["quantized_size_bytes"] < result["size_bytes"] / 2


def test_quantize_fp16(resnet20_onnx, tmp_path, capsys):
    code, stdout, _ = run(capsys, "quantize", resnet20_onnx, "--dataset", "digits", "-o", tmp_path / "m.fp16.onnx",
                          "--precision", "fp16")
    assert code == 0 and "in fp16" in stdout


def _adder(path):
    x = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 1, 8, 8]) for n in ("a", "b")]
    graph = helper.make_graph([helper.make_node("Add", ["a", "b"], ["y"])], "g", x,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 8, 8])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


@pytest.mark.parametrize("case, needle", [
    ("missing", "does not exist"),
    ("not_onnx", "not a valid ONNX file"),
    ("same_output", "is the input file"),
    ("two_inputs", "2 inputs"),
    ("bad_keep", "not a Conv/Gemm/MatMul node"),
    ("bad_dataset", "unknown dataset"),
    ("quantized", "already quantized"),
])
def test_bad_input_is_refused_in_one_sentence(resnet20_onnx, tmp_path, capsys, case, needle):
    model, out, extra = resnet20_onnx, tmp_path / "out.onnx", []
    if case == "missing":
        model = tmp_path / "nope.onnx"
    elif case == "not_onnx":
        model = tmp_path / "junk.onnx"
        model.write_bytes(b"\x08\x07garbage" * 10)
    elif case == "same_output":
        out = model
    elif case == "two_inputs":
        model = _adder(tmp_path / "add.onnx")
    elif case == "bad_keep":
        extra = ["--keep-fp32", "/conv1/Conv,/nope"]
    elif case == "quantized":
        assert main(["quantize", str(model), "--dataset", "digits", "-o", str(tmp_path / "q.onnx"),
                     "--calibration-batches", "1"]) == 0
        model = tmp_path / "q.onnx"
    dataset = "nope" if case == "bad_dataset" else "digits"
    code, _, err = run(capsys, "quantize", model, "--dataset", dataset, "-o", out, *extra)
    lines = err.strip().splitlines()
    assert code == 2 and needle in lines[-1] and "Traceback" not in err, err
    assert case == "same_output" or not out.exists()


def test_lut_on_an_int8_target_times_quantized_sub_graphs(resnet20_onnx, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DEPLOYPIPE_CACHE", str(tmp_path / "cache"))
    code, stdout, _ = run(capsys, "lut", resnet20_onnx, "--target", "cpu-int8", "--iterations", "2", "--no-cache")
    assert code == 0 and "on cpu-int8" in stdout
