"""The fp16 graph conversion: checker-clean, fp32 at the edges, fp16 inside, blocked and
fp32-only ports kept fp32, and numerically close to the fp32 graph under ONNX Runtime."""
from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from deploypipe.backends.fp16 import to_fp16
from deploypipe.export import export_onnx
from deploypipe.models import create_model


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("arch", ["test_resnet_cifar", "test_mobilenet_v2", "test_vgg", "test_resnet"])
def test_zoo_models_convert_and_stay_close(arch, tmp_path):
    model = create_model(arch)
    size = tuple(model.deploypipe_arch["kwargs"]["input_size"])
    export_onnx(model, tmp_path / "m.onnx", input_shape=(1, 3, *size))
    fp32 = onnx.load(str(tmp_path / "m.onnx"))
    fp16 = to_fp16(fp32)
    onnx.checker.check_model(fp16, full_check=True)
    assert fp16.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert fp16.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    weights = [i for i in fp16.graph.initializer if i.name.endswith("weight")]
    assert weights and all(i.data_type == TensorProto.FLOAT16 for i in weights)
    assert Counter(n.op_type for n in fp16.graph.node)["Cast"] == 2  # one in, one out
    assert fp32.graph.initializer[0].data_type == TensorProto.FLOAT  # input left alone
    x = np.random.default_rng(0).standard_normal((2, 3, *size)).astype(np.float32)
    ref, got = _run(fp32, x), _run(fp16, x)
    assert got.dtype == np.float32
    scale = np.abs(ref).max()
    assert np.abs(got - ref).max() <= 1e-2 * max(scale, 1.0), (np.abs(got - ref).max(), scale)


def _graph(nodes, inits, out_type=TensorProto.FLOAT):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", out_type, [1, 4])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_blocked_op_runs_in_fp32_and_feeds_the_output_without_a_round_trip():
    w = numpy_helper.from_array(np.full((1, 4), 0.5, np.float32), "w")
    model = _graph([helper.make_node("Mul", ["x", "w"], ["h"], name="mul"),
                    helper.make_node("Softmax", ["h"], ["y"], name="softmax")], [w])
    out = to_fp16(model)
    nodes = {n.name: n for n in out.graph.node}
    assert nodes["mul"].output[0] == "h"  # computed in fp16 ...
    assert nodes["softmax"].input[0] == "h__fp32"  # ... cast up for Softmax
    assert nodes["softmax"].output[0] == "y"  # already fp32: no Cast before the output
    x = np.array([[1.0, 2.0, 3.0, 4.0]], np.float32)
    np.testing.assert_allclose(_run(out, x), _run(model, x), atol=1e-3)


def test_fp32_only_inputs_stay_fp32():
    """Resize's ``scales`` is tensor(float) only in the schema: it must not become fp16."""
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    roi = numpy_helper.from_array(np.zeros(0, np.float32), "roi")
    g = helper.make_graph([helper.make_node("Resize", ["x", "roi", "scales"], ["y"], name="up")],
                          "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 4])],
                          [roi, scales])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    out = to_fp16(model)
    inits = {i.name: i.data_type for i in out.graph.initializer}
    assert inits["scales"] == TensorProto.FLOAT and inits["roi"] == TensorProto.FLOAT16
    x = np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2)
    np.testing.assert_allclose(_run(out, x), _run(model, x), atol=1e-3)


def test_values_beyond_fp16_range_are_clipped_not_infinite():
    w = numpy_helper.from_array(np.array([[1e6, -1e6, 1.0, 2.0]], np.float32), "w")
    out = to_fp16(_graph([helper.make_node("Add", ["x", "w"], ["y"])], [w]))
    values = numpy_helper.to_array(out.graph.initializer[0])
    assert values.dtype == np.float16 and np.isfinite(values).all()
    assert values.max() == np.float16(65504)
