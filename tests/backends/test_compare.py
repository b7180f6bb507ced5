"""``deploypipe compare`` on the CPU (PyTorch against ONNX Runtime), the tolerance arithmetic,
and the one-sentence refusal of backends this machine lacks."""
from __future__ import annotations

import json

import numpy as np
import pytest

from deploypipe.backends._gpu import gpu_missing_reason
from deploypipe.backends.compare import compare_backends, compare_outputs, parse_backends
from deploypipe.backends.runtimes import Runtime
from deploypipe.cli import main
from deploypipe.errors import DeviceError, InputError
from deploypipe.targets import Tolerances, load_target

no_gpu = pytest.mark.skipif(gpu_missing_reason() is None, reason="this machine has a GPU")


def test_tolerance_arithmetic():
    ref = [np.array([1.0, -2.0, 0.0]), np.array([4.0, 1.0, 1.0])]
    got = [np.array([1.1, -2.0, 0.0]), np.array([4.0, 1.0, 1.3])]
    c = compare_outputs("y", ref, got, Tolerances(atol=0.01, rtol=0.01))
    assert c.max_abs == pytest.approx(0.3) and c.max_rel == pytest.approx(0.3)
    assert not c.passed
    assert c.passing_atol == pytest.approx(0.3 - 0.01 * 1.0)  # at rtol 0.01
    assert c.passing_rtol == pytest.approx((0.3 - 0.01) / 1.0)  # at atol 0.01
    again = compare_outputs("y", ref, got, Tolerances(atol=c.passing_atol, rtol=0.01))
    assert again.passed
    assert "FAILED  y [3]" in c.line() and "would pass with atol 0.29" in c.line()


def test_shape_mismatch_fails_with_a_note():
    c = compare_outputs("y", [np.zeros((2, 3))], [np.zeros((3, 2))], Tolerances())
    assert not c.passed and "differs" in c.line()


def test_torch_against_ort_on_the_cpu(tiny_onnx):
    backends = parse_backends("torch,ort")
    report = compare_backends(tiny_onnx, backends, target=load_target("cpu"), trials=2)
    (result,) = report.results
    (out,) = result.outputs
    assert report.passed and result.backend == "ort" and out.output == "logits"
    assert out.shape == (2, 10) and 0 < out.max_abs < 1e-4
    assert out.atol == 1e-4 and out.rtol == 1e-3
    assert report.reference_providers and "cpu" in report.reference_providers[0]
    strict = compare_backends(tiny_onnx, backends, target=load_target("cpu"), trials=2,
                              tolerances=Tolerances(atol=0.0, rtol=0.0))
    assert not strict.passed
    assert strict.results[0].outputs[0].passing_atol == pytest.approx(out.max_abs)


@no_gpu
@pytest.mark.parametrize("name", ["trt", "ort-trt", "ort-cuda", "torch-cuda"])
def test_gpu_backends_are_refused_in_one_sentence_before_any_build(name, tiny_onnx, monkeypatch):
    built = []
    monkeypatch.setattr(Runtime, "create", lambda self: built.append(self.name))
    with pytest.raises(DeviceError) as err:
        compare_backends(tiny_onnx, parse_backends(f"ort,{name}"), target=load_target("cpu"))
    msg = err.value.sentence()
    assert f"backend {name!r}" in msg and "no NVIDIA GPU" in msg
    assert "\n" not in msg and built == []


def test_backend_lists_are_checked():
    with pytest.raises(InputError, match="unknown backend 'tensorrt'"):
        parse_backends("ort,tensorrt")
    with pytest.raises(InputError, match="at least two"):
        parse_backends("ort")


def test_cli_writes_json_and_exits_by_verdict(tiny_onnx, tmp_path, capsys):
    out = tmp_path / "compare.json"
    assert main(["compare", str(tiny_onnx), "--backends", "ort,torch", "--trials", "1",
                 "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "PASSED" in text and "would pass with atol" in text
    data = json.loads(out.read_text())
    assert data["passed"] is True and data["results"][0]["outputs"][0]["output"] == "logits"
    assert main(["compare", str(tiny_onnx), "--backends", "ort,torch", "--trials", "1",
                 "--atol", "0", "--rtol", "0"]) == 1
    assert "FAILED" in capsys.readouterr().out


@no_gpu
def test_cli_refuses_trt_here_with_exit_2(tiny_onnx, capsys):
    assert main(["compare", str(tiny_onnx), "--backends", "torch,ort,trt"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("deploypipe: error: backend 'trt' (native TensorRT) cannot run here")
    assert err.count("\n") == 0
