"""The native TensorRT backend's logic, on the CPU, against a fake ``tensorrt`` module:
precision flags on TensorRT 10, fp16 graphs and strongly typed networks on 11, optimisation
profiles, timing-cache reuse, engine-cache keys and hits, parse errors, IProfiler records."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import onnx
import pytest

from deploypipe.backends.tensorrt import TensorRTBackend
from deploypipe.backends.trt_cache import EngineCache, engine_key
from deploypipe.backends.trt_options import DEFAULT_MAX_BATCH, plan_build, trt_major
from deploypipe.backends.trt_profile import LayerRecords, layers_from_records, make_profiler
from deploypipe.backends.layer_map import GraphIndex
from deploypipe.errors import UnsupportedError
from deploypipe.measure.fingerprint import Fingerprint
from deploypipe.targets import load_target

FP = Fingerprint(cpu="cpu", logical_cores=2, machine="x86_64", system="Linux", os="Linux",
                 python="3.11", numpy="2", onnxruntime="1.31", torch="2.13", onnx="1.23",
                 gpu="NVIDIA H100 80GB HBM3", gpu_driver="550.54", cuda="12.4",
                 tensorrt="10.8.0")


def _build(trt, onnx_path, target_name, cache, **kw) -> dict:
    target = load_target(target_name)
    if kw:
        target = dataclasses.replace(target, **kw)
    data = TensorRTBackend(fingerprint=FP).engine_bytes(trt, onnx_path, target, cache_dir=cache)
    return json.loads(data)


def test_trt10_fp16_sets_builder_flags_on_the_fp32_graph(fake_trt, tiny_onnx, tmp_path):
    trt = fake_trt("10.8.0.43")
    built = _build(trt, tiny_onnx, "gpu-trt-fp16", tmp_path)
    assert built["flags"] == ["FP16"] and built["cleared"] == []
    assert built["network_flags"] == 0  # weakly typed: explicit batch is implicit in 10+
    assert built["source"] == str(tiny_onnx)
    assert built["pools"] == {"WORKSPACE": 4 << 30}
    assert built["verbosity"] == "DETAILED"


def test_trt11_fp16_builds_a_strongly_typed_network_from_an_fp16_graph(fake_trt, tiny_onnx,
                                                                        tmp_path):
    trt = fake_trt("11.0.0.1")
    built = _build(trt, tiny_onnx, "gpu-trt-fp16", tmp_path)
    assert built["flags"] == []  # BuilderFlag.FP16 does not exist in 11
    assert built["network_flags"] == 1 << trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED
    graph = onnx.load(built["source"])
    assert built["source"] != str(tiny_onnx)
    onnx.checker.check_model(graph)
    kinds = {i.data_type for i in graph.graph.initializer if i.name.endswith("weight")}
    assert kinds == {onnx.TensorProto.FLOAT16}
    assert graph.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_fp32_clears_tf32_on_both_versions(fake_trt, tiny_onnx, tmp_path):
    for version in ("10.8.0", "11.1.0"):
        built = _build(fake_trt(version), tiny_onnx, "gpu-trt-fp16", tmp_path / version,
                       precision="fp32")
        assert built["cleared"] == ["TF32"] and built["flags"] == []


@pytest.mark.parametrize("version", ["10.8.0", "11.0.0"])
def test_int8_without_qdq_is_refused_in_one_sentence(fake_trt, tiny_onnx, tmp_path, version):
    trt = fake_trt(version)
    with pytest.raises(UnsupportedError) as err:
        _build(trt, tiny_onnx, "gpu-trt-int8", tmp_path)
    msg = err.value.sentence()
    assert "QuantizeLinear" in msg and "calibrate" in msg and "\n" not in msg
    assert trt.builds == []


def test_int8_with_qdq_sets_int8_on_10_and_nothing_on_11():
    target = load_target("gpu-trt-int8")
    assert plan_build("10.3.0", target, [], has_qdq=True).builder_flags == ("FP16", "INT8")
    eleven = plan_build("11.0.0", target, [], has_qdq=True)
    assert eleven.builder_flags == () and eleven.strongly_typed and not eleven.convert_fp16


def test_dynamic_batch_gets_one_profile_from_1_to_max(fake_trt, tiny_onnx, tmp_path):
    built = _build(fake_trt(), tiny_onnx, "gpu-trt-fp16", tmp_path, batch=4)
    assert built["profiles"] == [{"input": [[1, 3, 32, 32], [4, 3, 32, 32],
                                            [DEFAULT_MAX_BATCH, 3, 32, 32]]}]


def test_fixed_shapes_need_no_profile(fake_trt, fixed_onnx, tmp_path):
    built = _build(fake_trt(), fixed_onnx, "gpu-trt-fp16", tmp_path, batch=4)
    assert built["profiles"] == []


def test_engine_cache_hit_skips_the_build_and_timing_cache_is_reused(fake_trt, tiny_onnx,
                                                                      tmp_path):
    trt = fake_trt()
    first = _build(trt, tiny_onnx, "gpu-trt-fp16", tmp_path)
    assert first["timing_loaded"] == ""  # no timing cache yet: an empty one
    again = _build(trt, tiny_onnx, "gpu-trt-fp16", tmp_path)
    assert again == first and len(trt.builds) == 1  # served from the engine cache
    other = _build(trt, tiny_onnx, "gpu-trt-fp16", tmp_path, precision="fp32")
    assert len(trt.builds) == 2
    assert other["timing_loaded"] == "|measured"  # the first build's tactic timings
    timing = EngineCache(tmp_path).timing_path(FP, trt.__version__)
    assert timing.read_bytes() == b"|measured|measured"
    engines = list((tmp_path / "tensorrt" / "engines").glob("*.engine"))
    assert len(engines) == 2 and all(e.with_suffix(".json").is_file() for e in engines)


def test_engine_key_changes_with_model_options_machine_and_version():
    opts = {"precision": "fp16", "builder_flags": ["FP16"]}
    base = engine_key("model-a", opts, FP, "10.8.0")
    assert base == engine_key("model-a", dict(opts), FP, "10.8.0")
    changed = [
        engine_key("model-b", opts, FP, "10.8.0"),
        engine_key("model-a", {**opts, "precision": "fp32"}, FP, "10.8.0"),
        engine_key("model-a", opts, dataclasses.replace(FP, gpu="NVIDIA A100"), "10.8.0"),
        engine_key("model-a", opts, dataclasses.replace(FP, gpu_driver="560.1"), "10.8.0"),
        engine_key("model-a", opts, FP, "10.9.0"),
    ]
    assert len({base, *changed}) == 6


def test_parse_errors_name_the_node(fake_trt, tiny_onnx, tmp_path):
    trt = fake_trt()
    trt.fail_parse("/layer1/conv/Conv", "Conv", "unsupported padding")
    with pytest.raises(UnsupportedError) as err:
        _build(trt, tiny_onnx, "gpu-trt-fp16", tmp_path)
    msg = err.value.sentence()
    assert "node '/layer1/conv/Conv' (Conv): unsupported padding" in msg and "\n" not in msg


def test_versions_are_read_from_the_version_string():
    assert trt_major("10.8.0.43") == 10 and trt_major("11.0.0") == 11
    with pytest.raises(UnsupportedError, match="too old"):
        plan_build("8.6.1", load_target("gpu-trt-fp16"), [], has_qdq=False)


def test_profiler_records_map_to_onnx_nodes_in_execution_order(fake_trt, tiny_onnx):
    trt = fake_trt()
    records = LayerRecords()
    profiler = make_profiler(trt, records)
    assert isinstance(profiler, trt.IProfiler)
    index = GraphIndex.from_path(tiny_onnx)
    conv, bn, relu = [n for n in index.order if "conv1" in n or "bn1" in n or "relu" in n][:3]
    fused = f"{conv} + {bn} + {relu}"
    for run in range(3):
        profiler.report_layer_time(fused, 0.5 + run)
        profiler.report_layer_time("Reformatting CopyNode for Input Tensor 0 to x", 0.1)
        profiler.report_layer_time("/fc/Gemm", 0.2)
    layers = layers_from_records(records, index)
    assert [l.name for l in layers] == [fused, "Reformatting CopyNode for Input Tensor 0 to x",
                                        "/fc/Gemm"]
    assert layers[0].onnx_nodes == (conv, bn, relu) and layers[0].onnx_node == conv
    assert layers[0].op_type == "Conv" and layers[0].medianMs == pytest.approx(1.5)
    assert layers[0].timeMs == pytest.approx(4.5)
    assert layers[1].onnx_node is None and layers[1].op_type == "Reformat"
    assert layers[2].onnx_nodes == ("/fc/Gemm",)
    assert sum(l.percentage for l in layers) == pytest.approx(100.0)
    assert np.isclose(layers[2].averageMs, 0.2)
