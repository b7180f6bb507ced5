"""The GPU tier: every GPU backend builds, runs, times and profiles zoo models and agrees with
ONNX Runtime on the CPU. Skipped with a reason without CUDA (tests/conftest.py); a backend
this GPU machine lacks (TensorRT, onnxruntime-gpu) is skipped with its own reason. Run with
``tools/gpu_check.sh`` on a GPU host."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from deploypipe.backends import backend_for_target, create_backend
from deploypipe.backends.compare import compare_backends, parse_backends
from deploypipe.backends.runtimes import RUNTIMES
from deploypipe.targets import load_target

pytestmark = pytest.mark.gpu

GPU_BACKENDS = ["trt", "ort-trt", "ort-cuda", "torch-cuda"]
TOLERANCE = {"fp32": (1e-3, 1e-3), "fp16": (2e-2, 2e-2)}


@pytest.fixture(scope="module", params=["test_resnet_cifar", "resnet18"])
def zoo_onnx(request, tmp_path_factory):
    """A zoo model exported with a dynamic batch, its checkpoint beside it."""
    from deploypipe.checkpoint import save_checkpoint
    from deploypipe.export import export_onnx
    from deploypipe.models import create_model

    folder = tmp_path_factory.mktemp(request.param)
    model = create_model(request.param)
    size = tuple(model.deploypipe_arch["kwargs"]["input_size"])
    export_onnx(model, folder / "m.onnx", input_shape=(1, 3, *size))
    save_checkpoint(folder / "m.pt", model)
    return folder / "m.onnx"


def _engine(name: str, onnx_path, precision: str, tmp_path):
    spec = RUNTIMES.get(name)
    if reason := spec.unavailable():
        pytest.skip(f"{name}: {reason}")
    target = spec.target(dataclasses.replace(load_target("gpu-trt-fp16"), precision=precision,
                                             batch=2))
    backend = spec.create()
    if spec.backend == "torch":
        return backend.build(onnx_path, target, onnx_path=onnx_path), target
    return backend.build(onnx_path, target, cache_dir=tmp_path), target


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("name", GPU_BACKENDS)
def test_backend_matches_ort_cpu_times_and_profiles(name, precision, zoo_onnx, tmp_path):
    with create_backend("onnxruntime").build(zoo_onnx, load_target("cpu")) as ref_engine:
        feeds = ref_engine.feeds(2, seed=1)
        ref = ref_engine.run(feeds)[0]
    engine, target = _engine(name, zoo_onnx, precision, tmp_path)
    with engine:
        got = engine.run(feeds)[0]
        atol, rtol = TOLERANCE[precision]
        scale = max(float(np.abs(ref).max()), 1.0)
        assert got.shape == ref.shape and np.isfinite(got).all()
        assert np.abs(got - ref).max() <= atol * scale + rtol * np.abs(ref).max(), \
            (name, precision, float(np.abs(got - ref).max()))
        stats = engine.time(batch=2, warmup=5, iterations=20)
        assert stats.n == 20 and 0 < stats.min <= stats.median <= stats.p90
        layers = engine.profile_layers(batch=2, iterations=5)
    assert layers and sum(l.percentage for l in layers) == pytest.approx(100.0, rel=1e-3)
    if name in ("trt", "torch-cuda"):  # these name ONNX nodes per layer
        assert any(l.onnx_node and "Conv" in l.onnx_node for l in layers), \
            [l.name for l in layers][:10]


def test_target_gpu_picks_a_backend_that_runs(zoo_onnx, tmp_path):
    target = load_target("gpu")
    backend = backend_for_target(target)
    with backend.build(zoo_onnx, target, cache_dir=tmp_path) as engine:  # torch: the .pt beside
        out = engine.run(engine.feeds(1))[0]
        assert np.isfinite(out).all()
        assert engine.time(batch=1, warmup=5, iterations=10).median > 0


def test_trt_engine_is_cached_across_builds(zoo_onnx, tmp_path):
    if reason := RUNTIMES.get("trt").unavailable():
        pytest.skip(reason)
    target = load_target("gpu-trt-fp16")
    for _ in range(2):
        with create_backend("tensorrt").build(zoo_onnx, target, cache_dir=tmp_path) as engine:
            engine.run(engine.feeds(1))
    assert len(list((tmp_path / "tensorrt" / "engines").glob("*.engine"))) == 1
    assert list((tmp_path / "tensorrt" / "timing").glob("*.cache"))


def test_compare_gpu_backends_against_torch_cpu(zoo_onnx, tmp_path):
    names = ["torch", "ort"] + [n for n in GPU_BACKENDS if RUNTIMES.get(n).unavailable() is None]
    report = compare_backends(zoo_onnx, parse_backends(",".join(names)),
                              target=load_target("gpu-trt-fp16"), trials=2, cache_dir=tmp_path)
    assert report.passed, "\n".join(report.lines())
