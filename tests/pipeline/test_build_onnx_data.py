"""``deploypipe build model.onnx --dataset ...``: a zoo model given only as ONNX, pruned at 2x
fewer MACs, its accuracy measured through ONNX Runtime and recovered by least-squares
reconstruction (no PyTorch model, no fine-tuning); without data the summary says accuracy
was not measured."""
from __future__ import annotations

import json

import pytest

from deploypipe.cli import main


@pytest.fixture(scope="module")
def resnet20_onnx(tmp_path_factory):
    from deploypipe.data import load_dataset
    from deploypipe.testing.trained import digits_resnet20_onnx

    path = digits_resnet20_onnx(load_dataset("digits", seed=0), tmp_path_factory.mktemp("onnx_data") / "r20.onnx")
    return path


def test_onnx_build_with_data_reconstructs(resnet20_onnx, tmp_path, capsys):
    out = tmp_path / "run"
    before = resnet20_onnx.read_bytes()
    assert main(["build", str(resnet20_onnx), "--dataset", "digits", "--macs-budget", "2x", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    r = report["reconstruction"]
    assert report["dense"]["macs"] / report["pruned"]["macs"] >= 1.95
    assert r["accuracy_dense"] > 0.9
    assert r["accuracy_refit"] > r["accuracy_removed"] + 0.1, "reconstruction must recover accuracy measurably"
    assert r["agreement_refit"] > r["agreement_removed"]
    assert report["pruned"]["accuracy"] == r["accuracy_refit"] and report["dense"]["accuracy"] == r["accuracy_dense"]
    assert r["error_after"] < r["error_before"] and len(r["layers"]) > 10
    assert "reconstruction:" in printed and "after plain removal" in printed
    assert resnet20_onnx.read_bytes() == before
    # the delivered model is the refitted one
    from deploypipe.graph.evaluate import onnx_accuracy
    from deploypipe.data import load_dataset

    test = load_dataset("digits", seed=0).test
    x, y = (t.numpy() for t in test.tensors)
    assert onnx_accuracy(str(out / "pruned.onnx"), x, y) == pytest.approx(r["accuracy_refit"])


def test_onnx_build_without_data_says_accuracy_is_unknown(resnet20_onnx, tmp_path, capsys):
    assert main(["build", str(resnet20_onnx), "--macs-budget", "2x", "-o", str(tmp_path / "run")]) == 0
    printed = capsys.readouterr().out
    assert "accuracy      not measured (no data given" in printed
    assert "reconstruction" not in json.loads((tmp_path / "run" / "report.json").read_text())


def test_onnx_build_quantizes_the_refitted_model_with_data(resnet20_onnx, tmp_path, capsys):
    """``--target cpu-int8`` on an ONNX file: the refitted pruned graph is quantized,
    calibrated and verified on the data, and reported beside dense and pruned fp32."""
    import onnx

    from deploypipe.quantize import has_qdq

    out = tmp_path / "run"
    assert main(["build", str(resnet20_onnx), "--dataset", "digits", "--macs-budget", "2x", "--target", "cpu-int8",
                 "--profile-iterations", "5", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    q, v = report["quantized"], report["verification"]["quantized"]
    assert has_qdq(onnx.load(str(out / "pruned.int8.onnx"))) and "pruned.int8.onnx" in report["artifacts"]
    assert q["precision"] == "int8" and q["macs"] == report["pruned"]["macs"] and q["target"] == "cpu-int8"
    assert v["passed"] and v["outputs"][0]["agreement"] >= 0.95
    assert report["pruned"]["accuracy"] == report["reconstruction"]["accuracy_refit"]  # fp32 column: refitted
    assert report["dense"]["latency_ms"]["median"] > 0 and q["latency_ms"]["median"] > 0
    # int8 CPU kernels like multiples of 16 (a group no wider than that is free)
    assert all(g["width_before"] <= 16 or g["width_after"] % 16 == 0 for g in report["groups"])
    assert report["method"]["round_to"] == 16
    assert "pruned int8" in printed and "top-1 agreement" in printed
