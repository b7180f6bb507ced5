"""Static int8 (Q/DQ) and fp16 quantization of ONNX graphs, verified against fp32."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from deploypipe.errors import InputError, UnsupportedError
from deploypipe.graph import load_onnx
from deploypipe.quantize import (QuantizeConfig, TimingQuantizer, Tolerance, has_qdq, layer_precisions,
                                 quantize_model)
from deploypipe.quantize.graph import weight_sqnr
from deploypipe.quantize.half import convert_fp16
from deploypipe.quantize.verify import compare


@pytest.fixture(scope="module")
def int8(resnet20_onnx, digits):
    return quantize_model(load_onnx(resnet20_onnx), digits, QuantizeConfig("int8"))


def test_int8_qdq_graph_loads_in_onnx_runtime_and_agrees_with_fp32(int8, resnet20_onnx, digits):
    assert has_qdq(int8.model)
    session = ort.InferenceSession(int8.model.SerializeToString(), providers=["CPUExecutionProvider"])
    x, y = (t.numpy() for t in digits.test.tensors)
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    ref = ort.InferenceSession(str(resnet20_onnx), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    agreement = float(np.mean(got.argmax(1) == ref.argmax(1)))
    assert agreement >= 0.98 and len(x) >= 250
    assert float(np.mean(ref.argmax(1) == y)) >= 0.97  # a really trained model
    v = int8.verification
    assert v.passed and v.outputs[0].agreement == pytest.approx(agreement)
    assert v.outputs[0].tolerance_abs == pytest.approx(0.10 * np.abs(ref).max(), rel=1e-4)
    assert v.accuracy_quantized == pytest.approx(float(np.mean(got.argmax(1) == y)))


def test_every_conv_and_gemm_is_int8_with_per_channel_weight_scales(int8):
    kept = {k.name for k in int8.kept}
    assert int8.layers and all(p == "int8" or n in kept for n, p in int8.layers.items())
    assert layer_precisions(int8.model) == int8.layers
    inits = {t.name: t for t in int8.model.graph.initializer}
    producer = {o: n for n in int8.model.graph.node for o in n.output}
    conv = next(n for n in int8.model.graph.node if n.op_type == "Conv")
    scale = numpy_helper.to_array(inits[producer[conv.input[1]].input[1]])
    weight = numpy_helper.to_array(inits[producer[conv.input[1]].input[0]])
    assert weight.dtype == np.int8 and scale.shape == (weight.shape[0],)


def test_weight_sqnr_is_high_for_per_channel_int8(resnet20_onnx, digits, tmp_path):
    from deploypipe.quantize.data import ImageInput
    from deploypipe.quantize.graph import named
    from deploypipe.quantize.int8 import prepare, quantize_int8

    prepared = prepare(named(load_onnx(resnet20_onnx)), tmp_path)
    feeds = [{"input": digits.train.tensors[0][:64].numpy()}]
    sqnr = weight_sqnr(prepared, quantize_int8(prepared, feeds))
    assert len(sqnr) == 22 and all(30 < v < 60 for v in sqnr.values())  # 8 bits: about 6 dB per bit
    assert ImageInput("input", None, 1, (8, 8)).batches(np.zeros((5, 1, 8, 8)), 2).__next__().shape[0] == 2


def test_keep_fp32_names_the_layers_and_leaves_them_fp32(resnet20_onnx, digits):
    q = quantize_model(load_onnx(resnet20_onnx), digits, QuantizeConfig("int8", keep_fp32=("first", "last")))
    kept = [k.name for k in q.kept]
    assert kept == ["/conv1/Conv", "/fc/Gemm"] and all("asked" in k.reason for k in q.kept)
    assert {n for n, p in q.layers.items() if p == "fp32"} == set(kept)
    assert q.passed and "kept in fp32: /conv1/Conv, /fc/Gemm" in q.sentence()


def test_missed_tolerance_keeps_the_most_helpful_layer_in_fp32(resnet20_onnx, digits):
    strict = Tolerance(min_agreement=1.0, max_error=1e-6)  # int8 cannot meet it
    q = quantize_model(load_onnx(resnet20_onnx), digits, QuantizeConfig("int8", tolerance=strict, max_auto_keep=1,
                                                                        calibration_batches=2))
    assert not q.passed and "FAILED" in q.verification.sentence()
    assert len(q.kept) == 1 and "kept automatically" in q.kept[0].reason  # the one that helped most
    assert q.layers[q.kept[0].name] == "fp32" and q.kept[0].name in q.sentence()


def test_fp16_conversion_keeps_io_in_fp32_and_agrees(resnet20_onnx, digits):
    q = quantize_model(load_onnx(resnet20_onnx), digits, QuantizeConfig("fp16"))
    assert set(q.layers.values()) == {"fp16"} and q.passed and q.calibration_images == 0
    assert q.model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert q.verification.outputs[0].agreement >= 0.995


def test_fp16_converter_converts_if_subgraphs():
    """The maintained converter reaches into If branches (the backends' own does not)."""
    w = numpy_helper.from_array(np.full((4, 4), 0.5, np.float32), "w")
    out = lambda n: [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4])]  # noqa: E731
    then = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["t"])], "then", [], out("t"))
    other = helper.make_graph([helper.make_node("Add", ["x", "x"], ["e"])], "else", [], out("e"))
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0), helper.make_node("Greater", ["s", "z"], ["c"]),
         helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])], out("y"),
        [w, numpy_helper.from_array(np.array(0, np.float32), "z")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    half = convert_fp16(model)
    branch = next(a.g for n in half.graph.node if n.op_type == "If" for a in n.attribute if a.name == "then_branch")
    assert any(t.data_type == TensorProto.FLOAT16 for t in half.graph.initializer) or branch.node
    y = ort.InferenceSession(half.SerializeToString()).run(None, {"x": np.ones((1, 4), np.float32)})[0]
    assert y.dtype == np.float32 and np.allclose(y, 2.0)


def test_compare_states_the_tolerance_per_output():
    ref = [np.array([[3.0, 1.0], [0.0, 2.0], [1.0, 0.0]]), np.array([[10.0], [20.0], [30.0]])]
    got = [np.array([[2.9, 1.1], [2.1, 2.0], [1.0, 0.2]]), np.array([[11.0], [20.0], [30.0]])]
    v = compare(ref, got, ["logits", "box"], Tolerance(min_agreement=0.6, max_error=0.05), labels=np.array([0, 1, 1]))
    logits, box = v.outputs
    assert logits.agreement == pytest.approx(2 / 3) and logits.max_abs == pytest.approx(2.1)
    assert logits.tolerance_abs == pytest.approx(0.15) and not logits.passed
    assert box.agreement is None and box.tolerance_abs == pytest.approx(1.5) and box.passed
    assert (v.accuracy_fp32, v.accuracy_quantized) == (pytest.approx(2 / 3), pytest.approx(1 / 3))
    assert not v.passed and "logits: top-1 agreement 66.67%" in v.sentence()


def test_one_image_in_a_hundred_does_not_fail_the_error_check():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((1000, 10))
    got = ref + 0.01
    got[7, 3] += 5.0  # one image's logit far off; the class it picks is unchanged or not
    (check,) = compare([ref], [got], ["logits"], Tolerance(min_agreement=0.98, max_error=0.10)).outputs
    assert check.max_abs == pytest.approx(5.01) and check.error_p99 == pytest.approx(0.01)
    assert check.passed and "largest 5.01" in compare([ref], [got], ["logits"], Tolerance(
        min_agreement=0.98, max_error=0.10)).sentence()
    worse = got.copy()
    worse[:20] += 5.0  # 2% of the images: the 99th percentile sees it
    assert not compare([ref], [worse], ["logits"], Tolerance(0.98, 0.10)).outputs[0].passed


def test_timing_quantizer_quantizes_once_and_passes_quantized_models(resnet20_onnx, int8):
    from deploypipe.hw import with_batch

    tq = TimingQuantizer("int8")
    model = with_batch(load_onnx(resnet20_onnx), 32)
    first = tq(model)
    assert has_qdq(first) and tq(model) is first
    assert tq(int8.model) is int8.model
    assert first.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 32


def _two_inputs() -> onnx.ModelProto:
    x = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 1, 8, 8]) for n in ("a", "b")]
    graph = helper.make_graph([helper.make_node("Add", ["a", "b"], ["y"])], "g", x,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 8, 8])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_refusals_are_one_sentence(int8, resnet20_onnx, digits):
    with pytest.raises(InputError, match="already quantized"):
        quantize_model(int8.model, digits)
    with pytest.raises(UnsupportedError, match="2 inputs") as exc:
        quantize_model(_two_inputs(), digits)
    assert exc.value.sentence().count(". ") == 0
    with pytest.raises(InputError, match="not a Conv/Gemm/MatMul node"):
        quantize_model(load_onnx(resnet20_onnx), digits, QuantizeConfig(keep_fp32=("/nope",)))
    with pytest.raises(InputError, match="precision 'int4'"):
        QuantizeConfig("int4")
