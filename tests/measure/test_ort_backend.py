"""The ONNX Runtime backend: running, timing, per-node profiling, GPU refusal."""
from __future__ import annotations

import re
import statistics

import numpy as np
import onnx
import pytest

from deploypipe.backends import (BACKENDS, backend_for_target, create_backend, list_backends)
from deploypipe.backends._gpu import gpu_missing_reason
from deploypipe.backends.ort import session_options
from deploypipe.backends.ort_profile import kernel_durations, run_durations
from deploypipe.errors import DeviceError, InputError
from deploypipe.targets import TargetProfile, load_target

no_gpu = pytest.mark.skipif(gpu_missing_reason() is None, reason="this machine has a GPU")
FALLBACK = "session.disable_cpu_ep_fallback"


def _one_sentence(msg: str) -> bool:
    return "\n" not in msg and msg.endswith(".") and not re.search(r"[.!?]\s+[A-Z]", msg)


def _cuda_target() -> TargetProfile:
    return TargetProfile.from_mapping(
        {"providers": ["CUDAExecutionProvider"], "device": "cuda"},
        source="test", default_name="ort-cuda")


@pytest.fixture(scope="module")
def engine(tiny_onnx):
    with create_backend("onnxruntime").build(tiny_onnx, load_target("cpu")) as eng:
        yield eng


def test_inputs_and_run(engine):
    assert engine.input_names == ["input"]
    assert engine.input_shapes["input"][1:] == (3, 32, 32)
    assert isinstance(engine.input_shapes["input"][0], str)  # dynamic batch
    (out,) = engine.run(engine.feeds(3))
    assert out.shape == (3, 10) and np.isfinite(out).all()


def test_feeds_are_seeded(engine):
    a, b, c = engine.feeds(2, seed=1), engine.feeds(2, seed=1), engine.feeds(2, seed=2)
    assert np.array_equal(a["input"], b["input"])
    assert not np.array_equal(a["input"], c["input"])


def test_time_returns_stats(engine):
    stats = engine.time(batch=2, warmup=2, iterations=7)
    assert stats.n == 7 and stats.batch == 2
    assert 0 < stats.min <= stats.median <= stats.max


def test_layers_map_to_real_nodes(engine, tiny_onnx):
    layers = engine.profile_layers(batch=4, iterations=5)
    graph = onnx.load(str(tiny_onnx)).graph
    node_names = {n.name for n in graph.node}
    for layer in layers:
        if layer.onnx_node is None:  # only layout conversions ONNX Runtime inserted
            assert layer.op_type.startswith("Reorder"), layer
        else:
            assert layer.onnx_node in node_names, layer
    # each Conv (with its BatchNorm, activation and residual add fused in) is one kernel
    n_conv = sum(n.op_type == "Conv" for n in graph.node)
    assert sum(layer.op_type == "Conv" for layer in layers) == n_conv
    assert any(layer.name == "/fc/Gemm" and layer.onnx_node == "/fc/Gemm" for layer in layers)
    assert sum(layer.percentage for layer in layers) == pytest.approx(100.0)
    for layer in layers:
        assert layer.timeMs == pytest.approx(layer.averageMs * 5)
        assert layer.medianMs <= layer.timeMs


def test_layer_times_sum_to_about_the_run_time(engine):
    events = engine.trace_events(batch=8, iterations=10, warmup=2)
    runs = run_durations(events, skip_runs=2)
    kernels = [ts[2:] for _, ts in kernel_durations(events).values()]
    per_run = [sum(k[i] for k in kernels) for i in range(len(runs))]
    assert len(runs) == 10
    for k, r in zip(per_run, runs):  # sequential kernels fit inside their run
        assert k <= r * 1.01 + 0.002
    assert statistics.median(k / r for k, r in zip(per_run, runs)) > 0.5


def test_fixed_batch_is_respected(fixed_batch_onnx):
    with create_backend("onnxruntime").build(fixed_batch_onnx, load_target("cpu")) as eng:
        assert eng.run(eng.feeds(2))[0].shape == (2, 10)
        with pytest.raises(InputError, match="fixed batch of 2"):
            eng.feeds(3)


def test_closed_engine_refuses_to_run(tiny_onnx):
    eng = create_backend("onnxruntime").build(tiny_onnx, load_target("cpu"))
    eng.close()
    with pytest.raises(InputError, match="closed"):
        eng.run({})


def test_session_options_follow_the_target():
    import onnxruntime as ort

    so = session_options(load_target("cpu-batch32"))
    assert so.intra_op_num_threads == 1 and so.inter_op_num_threads == 1
    assert so.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    with pytest.raises(Exception):  # no such entry: CPU targets keep ORT's defaults
        so.get_session_config_entry(FALLBACK)


def test_gpu_providers_disable_cpu_fallback():
    assert session_options(_cuda_target()).get_session_config_entry(FALLBACK) == "1"


@no_gpu
def test_cuda_provider_without_gpu_is_one_sentence(tiny_onnx):
    with pytest.raises(DeviceError) as err:
        create_backend("onnxruntime").build(tiny_onnx, _cuda_target())
    msg = err.value.sentence()
    assert "CUDAExecutionProvider" in msg and "no NVIDIA GPU" in msg and "--target cpu" in msg
    assert _one_sentence(msg), msg


@no_gpu
@pytest.mark.parametrize("name", ["tensorrt", "torch"])
def test_gpu_backends_without_gpu(name):
    with pytest.raises(DeviceError) as err:
        create_backend(name)
    assert "no NVIDIA GPU" in err.value.sentence() and _one_sentence(err.value.sentence())


@no_gpu
# the id of "gpu" is spelled out: tests/conftest.py skips any test with a "gpu" keyword
@pytest.mark.parametrize("target", [pytest.param("gpu", id="auto-gpu"), "gpu-trt-fp16",
                                    "gpu-trt-int8", "torch-cuda", "jetson-orin"])
def test_gpu_targets_without_gpu(target):
    with pytest.raises(DeviceError) as err:
        backend_for_target(load_target(target))
    assert target in err.value.sentence() and _one_sentence(err.value.sentence())


def test_unknown_backend_suggests():
    with pytest.raises(InputError, match="onnxruntime"):
        create_backend("onnxruntim")


def test_registry_lists_every_backend():
    listed = {spec.name: reason for spec, reason in list_backends()}
    assert set(listed) == set(BACKENDS.names()) >= {"onnxruntime", "tensorrt", "torch"}
    assert listed["onnxruntime"] is None
