"""The TensorRT engine's binding, running, timing and profiling logic on the CPU: the fake
``tensorrt`` of conftest.py, with torch.cuda's buffers, stream and events replaced by CPU
stand-ins (a 'device pointer' is a CPU tensor's data_ptr, which the fake engine reads)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from deploypipe.backends import trt_engine
from deploypipe.backends._cuda import torch_dtype
from deploypipe.backends.trt_engine import TensorRTEngine
from deploypipe.errors import DeviceError, InputError
from deploypipe.measure.timing import time_callable
from deploypipe.targets import load_target


class _Stream:
    cuda_stream = 0
    syncs = 0

    def synchronize(self):
        _Stream.syncs += 1


@pytest.fixture
def trt(fake_trt, monkeypatch):
    module = fake_trt("10.8.0")

    def register(t):
        module.memory[t.data_ptr()] = t
        return t

    monkeypatch.setattr(trt_engine, "require_cuda", lambda: None)
    monkeypatch.setattr(trt_engine, "to_device", lambda x, s: register(torch.from_numpy(x.copy())))
    monkeypatch.setattr(trt_engine, "device_empty",
                        lambda shape, dtype: register(torch.empty(shape, dtype=torch_dtype(dtype))))
    monkeypatch.setattr(trt_engine, "cuda_event_samples",
                        lambda call, stream, **kw: time_callable(call, **kw))
    monkeypatch.setattr(torch.cuda, "Stream", _Stream)
    return module


@pytest.fixture
def engine(trt, tiny_onnx):
    with TensorRTEngine(trt, b"engine", onnx_path=tiny_onnx,
                        target=load_target("gpu-trt-fp16")) as eng:
        yield eng


def test_io_comes_from_the_engine_by_name(engine):
    (spec,) = engine.inputs
    assert spec.name == "input" and spec.shape == (None, 3, 32, 32)
    assert spec.dtype == np.float32
    assert engine.providers == ["TensorRT 10.8.0 (fp16)"]


def test_run_binds_shapes_and_addresses_and_returns_host_outputs(engine, trt):
    (out,) = engine.run(engine.feeds(3))
    assert out.shape == (3, 10) and np.all(out == 3.0)
    context = trt.engines[0].contexts[0]
    assert context.shapes == {"input": (3, 3, 32, 32)}
    assert set(context.addresses) == {"input", "logits"}


def test_a_batch_outside_the_profile_is_one_sentence(engine):
    with pytest.raises(InputError, match="outside the engine's optimisation profile"):
        engine.run(engine.feeds(17))


def test_a_failed_execution_is_a_device_error(engine, trt):
    trt.engines[0].contexts[0].fail = True
    with pytest.raises(DeviceError, match="failed to run"):
        engine.run(engine.feeds(1))


def test_timing_binds_once_and_runs_per_iteration(engine, trt):
    stats = engine.time(batch=2, warmup=2, iterations=5)
    context = trt.engines[0].contexts[0]
    assert stats.n == 5 and context.runs == 7 and context.shapes["input"][0] == 2
    assert context.profiler is None  # the timed context never carries a profiler
    assert context.nvtx_verbosity == "NONE"  # nor the DETAILED verbosity of the build


def test_profiling_uses_its_own_context_and_maps_layers(engine, trt):
    layers = engine.profile_layers(batch=2, iterations=4, warmup=1)
    timed, profiled = trt.engines[0].contexts
    assert timed.profiler is None and profiled.runs == 5
    assert timed.nvtx_verbosity == "NONE" and profiled.nvtx_verbosity == "DETAILED"
    assert [l.name for l in layers] == ["/conv1/Conv + /bn1/BatchNormalization", "/fc/Gemm"]
    assert layers[0].onnx_nodes == ("/conv1/Conv", "/bn1/BatchNormalization")
    assert layers[0].timeMs == pytest.approx(1.0) and layers[1].medianMs == pytest.approx(0.05)


def test_a_closed_engine_refuses_to_run(engine):
    engine.close()
    with pytest.raises(InputError, match="closed"):
        engine.run({})


def test_an_engine_that_does_not_deserialize_is_one_sentence(trt, tiny_onnx):
    with pytest.raises(DeviceError, match="cannot deserialize"):
        TensorRTEngine(trt, b"corrupt", onnx_path=tiny_onnx, target=load_target("gpu-trt-fp16"))


def test_build_end_to_end_caches_the_engine_file(trt, tiny_onnx, tmp_path, monkeypatch):
    from deploypipe.backends import tensorrt as trt_backend

    monkeypatch.setattr(trt_backend, "gpu_missing_reason", lambda: None)
    backend = trt_backend.TensorRTBackend()
    with backend.build(tiny_onnx, load_target("gpu-trt-fp16"), cache_dir=tmp_path) as eng:
        assert eng.engine_path.is_file() and eng.engine_path.is_relative_to(tmp_path)
        assert eng.run(eng.feeds(2))[0].shape == (2, 10)
    with backend.build(tiny_onnx, load_target("gpu-trt-fp16"), cache_dir=tmp_path) as again:
        assert again.engine_path == eng.engine_path
    assert len(trt.builds) == 1


def test_build_without_a_gpu_is_one_sentence(fake_trt, tiny_onnx, monkeypatch):
    from deploypipe.backends import tensorrt as trt_backend

    fake_trt()
    monkeypatch.setattr(trt_backend, "gpu_missing_reason", lambda: "no NVIDIA GPU was found")
    with pytest.raises(DeviceError) as err:
        trt_backend.TensorRTBackend().build(tiny_onnx, load_target("gpu-trt-fp16"))
    assert "needs an NVIDIA GPU" in err.value.sentence() and "\n" not in err.value.sentence()


@pytest.fixture
def trt_gpu(trt, monkeypatch):
    """The fake TensorRT with a GPU 'present' for every module that asks."""
    from deploypipe.backends import runtimes
    from deploypipe.backends import tensorrt as trt_backend

    for module in (runtimes, trt_backend):
        monkeypatch.setattr(module, "gpu_missing_reason", lambda: None)
    return trt


def test_a_profiled_engine_is_handed_over_as_a_plan_and_profiles_again(trt_gpu, tiny_onnx,
                                                                        tmp_path, monkeypatch):
    from deploypipe.profiling import profile_onnx
    from deploypipe.pipeline.engines import hand_over_engine

    monkeypatch.setenv("DEPLOYPIPE_CACHE", str(tmp_path / "cache"))
    target = load_target("gpu-trt-fp16")
    first = profile_onnx(tiny_onnx, target, iterations=3, warmup=1)
    assert first.backend == "tensorrt" and first.engine_file is not None
    assert "GPU compute time" in first.timing and first.to_dict()["timing"] == first.timing
    run = tmp_path / "run"
    run.mkdir()
    (run / "pruned.onnx").write_bytes(tiny_onnx.read_bytes())
    assert hand_over_engine(first, run, "pruned") == ["pruned.plan", "pruned.plan.json"]
    assert (run / "pruned.plan").read_bytes() == Path(first.engine_file).read_bytes()
    record = json.loads((run / "pruned.plan.json").read_text())
    assert record["options"]["precision"] == "fp16" and record["onnx"] == "pruned.onnx"
    assert record["fingerprint"]["key"] and record["key"] in first.engine_file
    again = profile_onnx(run / "pruned.plan", target, iterations=3, warmup=1)
    assert again.backend == "tensorrt" and len(trt_gpu.builds) == 1  # loaded, not rebuilt
    assert again.layers[0].onnx_nodes == ("/conv1/Conv", "/bn1/BatchNormalization")


def test_a_plan_on_a_non_tensorrt_target_is_one_sentence(tmp_path):
    from deploypipe.errors import InputError as Refused
    from deploypipe.profiling import profile_onnx

    plan = tmp_path / "model.plan"
    plan.write_bytes(b"engine")
    with pytest.raises(Refused, match="is a TensorRT engine, and target 'cpu' runs onnxruntime"):
        profile_onnx(plan, "cpu")


def test_no_engine_no_hand_over(tmp_path):
    from types import SimpleNamespace

    from deploypipe.pipeline.engines import hand_over_engine

    assert hand_over_engine(SimpleNamespace(engine_file=None), tmp_path, "dense") == []
    assert not list(tmp_path.iterdir())


def test_a_timing_cache_file_is_read_and_updated(trt_gpu, tiny_onnx, tmp_path):
    from deploypipe.backends.tensorrt import TensorRTBackend

    cache_file = tmp_path / "my.timing"
    cache_file.write_bytes(b"earlier")
    target = load_target("gpu-trt-fp16").overridden(timing_cache=str(cache_file))
    TensorRTBackend().build(tiny_onnx, target, cache_dir=tmp_path / "cache").close()
    assert trt_gpu.builds[-1]["timing_loaded"] == "earlier"
    assert cache_file.read_bytes() == b"earlier|measured"
    assert not (tmp_path / "cache" / "tensorrt" / "timing").exists()


def test_two_runs_building_one_engine_build_it_once(trt, tiny_onnx, tmp_path, monkeypatch):
    """The second run waits on the entry's lock and reuses the first run's engine (without the
    lock both build, each paying TensorRT's minutes)."""
    import threading
    import time

    from deploypipe.backends import tensorrt as trt_backend

    monkeypatch.setenv("DEPLOYPIPE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(trt_backend, "gpu_missing_reason", lambda: None)
    real, builds = trt_backend.build_engine, []

    def slow_build(*args):
        builds.append(threading.get_ident())
        time.sleep(0.3)  # both threads are inside engine_file before the first one stores
        return real(*args)

    monkeypatch.setattr(trt_backend, "build_engine", slow_build)
    backend, paths = trt_backend.TensorRTBackend(), []
    threads = [threading.Thread(target=lambda: paths.append(backend.engine_file(
        trt, tiny_onnx, load_target("gpu-trt-fp16"), cache_dir=tmp_path))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1 and len(paths) == 2 and paths[0] == paths[1] and paths[0].is_file()
