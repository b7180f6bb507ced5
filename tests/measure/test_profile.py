"""profile_onnx: the API behind `deploypipe profile`."""
from __future__ import annotations

import json

import pytest

from deploypipe.errors import InputError
from deploypipe.profiling import profile_onnx


def test_profile_result(tiny_onnx):
    r = profile_onnx(tiny_onnx, "cpu", batch=3, threads=1, warmup=1, iterations=5)
    assert r.batch == 3 and r.target.threads == 1 and r.target.name == "cpu"
    assert r.input_shapes == {"input": (3, 3, 32, 32)}
    assert r.stats.n == 5 and r.latency_ms == r.stats.median
    assert r.backend == "onnxruntime" and r.providers == ("CPUExecutionProvider",)
    assert r.layers and r.top_layers(3)[0].timeMs == max(layer.timeMs for layer in r.layers)
    d = json.loads(json.dumps(r.to_dict()))
    assert d["latency"]["count"] == 5 and d["inputShapes"] == {"input": [3, 3, 32, 32]}
    assert d["fingerprint"]["key"] == r.fingerprint.key()
    assert {"name", "op_type", "timeMs", "averageMs", "medianMs", "percentage"} <= d["layers"][0].keys()


def test_without_per_layer(tiny_onnx):
    r = profile_onnx(tiny_onnx, "cpu-batch32", per_layer=False, warmup=0, iterations=2)
    assert r.layers == [] and r.batch == 32 and r.target.threads == 1


def test_missing_and_bad_files(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        profile_onnx(tmp_path / "nope.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00\x01 not a protobuf at all")
    with pytest.raises(InputError, match="not an ONNX model"):
        profile_onnx(bad)


def test_bad_override(tiny_onnx):
    with pytest.raises(InputError, match="iterations"):
        profile_onnx(tiny_onnx, iterations=0)
