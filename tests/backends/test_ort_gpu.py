"""ONNX Runtime's GPU providers, checked on the CPU: provider options from the target, the
graph each provider gets, no silent CPU fallback, and device-side IO binding for timing."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from deploypipe.backends import ort as ort_backend
from deploypipe.backends.ort import OrtEngine, session_options
from deploypipe.backends.ort_gpu import (check_session_providers, device_bound_call,
                                         gpu_model_path, provider_entries)
from deploypipe.errors import DeviceError, UnsupportedError
from deploypipe.targets import TargetProfile

TRT = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def _target(providers=TRT, precision="fp16") -> TargetProfile:
    return TargetProfile(name="ort-gpu", providers=providers, device="cuda",
                         precision=precision, requires_gpu=True)


def test_tensorrt_provider_gets_precision_and_caches(tmp_path):
    entries = provider_entries(_target(), tmp_path)
    (trt_name, trt_opts), (cuda_name, cuda_opts) = entries
    assert (trt_name, cuda_name) == TRT and cuda_opts == {"device_id": 0, "use_tf32": 1}
    assert trt_opts["trt_fp16_enable"] is True and trt_opts["trt_int8_enable"] is False
    assert trt_opts["trt_engine_cache_enable"] and trt_opts["trt_timing_cache_enable"]
    for key in ("trt_engine_cache_path", "trt_timing_cache_path"):
        assert trt_opts[key].startswith(str(tmp_path)) and (tmp_path / trt_opts[key]).is_dir()
    fp32 = dict(provider_entries(_target(precision="fp32"), tmp_path))
    assert fp32["TensorrtExecutionProvider"]["trt_fp16_enable"] is False


def test_gpu_sessions_disable_cpu_fallback():
    so = session_options(_target())
    assert so.get_session_config_entry("session.disable_cpu_ep_fallback") == "1"


def test_cuda_provider_fp16_gets_the_converted_graph(tiny_onnx, tmp_path):
    cuda = _target(providers=("CUDAExecutionProvider",))
    path = gpu_model_path(tiny_onnx, cuda, tmp_path)
    assert path != tiny_onnx and path.is_relative_to(tmp_path)
    kinds = {i.data_type for i in onnx.load(str(path)).graph.initializer}
    assert onnx.TensorProto.FLOAT16 in kinds
    assert gpu_model_path(tiny_onnx, _target(), tmp_path) == tiny_onnx  # TensorRT EP: a flag
    assert gpu_model_path(tiny_onnx, dataclasses.replace(cuda, precision="fp32"), tmp_path) == tiny_onnx


def test_int8_without_tensorrt_and_qdq_is_refused(tiny_onnx, tmp_path):
    for providers in (TRT, ("CUDAExecutionProvider",)):
        with pytest.raises(UnsupportedError, match="int8"):
            gpu_model_path(tiny_onnx, _target(providers, "int8"), tmp_path)


class _Session:
    def __init__(self, providers):
        self._providers = providers
        self.bound: list = []
        self.runs = 0

    def get_providers(self):
        return self._providers

    def get_inputs(self):
        return []

    def get_outputs(self):
        return [type("Out", (), {"name": "logits"})()]

    def io_binding(self):
        session = self

        class Binding:
            def bind_ortvalue_input(self, name, value):
                session.bound.append(("in", name, value))

            def bind_output(self, name, device, device_id):
                session.bound.append(("out", name, device, device_id))

            def synchronize_outputs(self):
                session.bound.append(("sync",))

        return Binding()

    def run_with_iobinding(self, binding):
        self.runs += 1


def test_a_session_that_dropped_its_gpu_provider_is_refused(monkeypatch, tiny_onnx):
    monkeypatch.setattr(ort_backend, "_session", lambda *a: _Session(["CPUExecutionProvider"]))
    with pytest.raises(DeviceError) as err:
        OrtEngine(tiny_onnx, _target(("CUDAExecutionProvider",), "fp32"))
    msg = err.value.sentence()
    assert "CUDAExecutionProvider" in msg and "would not run on the GPU" in msg
    check_session_providers(_Session(list(TRT) + ["CPUExecutionProvider"]), _target())


def test_timing_binds_inputs_on_the_device_once(monkeypatch):
    made = []

    def from_numpy(x, device, device_id):
        made.append((x.shape, device, device_id))
        return ("ortvalue", device)

    monkeypatch.setattr(ort.OrtValue, "ortvalue_from_numpy", staticmethod(from_numpy))
    session = _Session(list(TRT))
    call = device_bound_call(session, {"input": np.zeros((2, 3), np.float32)})
    assert made == [((2, 3), "cuda", 0)]
    assert session.bound == [("in", "input", ("ortvalue", "cuda")), ("out", "logits", "cuda", 0)]
    call()
    call()
    assert session.runs == 2 and session.bound.count(("sync",)) == 2
    assert len(made) == 1  # no host-to-device copy per timed run


def test_tensorrt_engine_cache_is_keyed_by_the_model_content_not_its_name(tmp_path):
    """The provider names cached engines after the file and node names: a new graph saved
    under the same name (a later pruned.onnx, the latency table's m0.onnx) must not find the
    old engine, while the same graph elsewhere may reuse it."""
    path = tmp_path / "m0.onnx"

    def engines_for(model_bytes: bytes, where=path) -> str:
        where.write_bytes(model_bytes)
        return dict(provider_entries(_target(), tmp_path / "cache", where))[TRT[0]][
            "trt_engine_cache_path"]

    first, second = _two_graphs()
    a, b = engines_for(first), engines_for(second)
    assert a != b and Path(a).is_dir() and Path(b).is_dir()
    assert engines_for(first, tmp_path / "other.onnx") == a
    fp32 = dict(provider_entries(_target(precision="fp32"), tmp_path / "cache", path))
    assert fp32[TRT[0]]["trt_engine_cache_path"] != b  # the options are in the key too


def test_an_ort_engine_keys_its_tensorrt_cache_by_the_graph_it_loads(monkeypatch, tiny_onnx,
                                                                     tmp_path):
    seen = []

    def fake_session(path, target, so, providers):
        seen.append(dict(providers)[TRT[0]]["trt_engine_cache_path"])
        return _Session(list(TRT))

    monkeypatch.setattr(ort_backend, "_session", fake_session)
    first, second = _two_graphs()
    path = tmp_path / "pruned.onnx"
    for data in (first, second):
        path.write_bytes(data)
        OrtEngine(path, _target(), cache_dir=tmp_path)
    assert len(set(seen)) == 2


def test_fp32_turns_tf32_off_in_the_cuda_provider(tmp_path):
    cuda = ("CUDAExecutionProvider",)
    assert dict(provider_entries(_target(cuda, "fp32"), tmp_path))[cuda[0]]["use_tf32"] == 0
    assert dict(provider_entries(_target(cuda, "fp16"), tmp_path))[cuda[0]]["use_tf32"] == 1


def _two_graphs() -> tuple[bytes, bytes]:
    """Two graphs with the same names and shapes that differ only in their weights."""
    from onnx import helper, numpy_helper

    def graph(scale: float) -> bytes:
        w = numpy_helper.from_array(np.full((2, 2), scale, np.float32), "w")
        model = helper.make_model(helper.make_graph(
            [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g",
            [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2])],
            [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 2])], [w]))
        return model.SerializeToString()

    return graph(1.0), graph(2.0)
