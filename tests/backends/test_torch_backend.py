"""The PyTorch backend on the CPU: it runs the model itself (module, checkpoint, or the .pt
beside an ONNX file), agrees with ONNX Runtime, times and profiles per module."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from deploypipe.backends import create_backend
from deploypipe.backends._gpu import gpu_missing_reason
from deploypipe.backends.torch_cuda import TorchBackend, resolve_model
from deploypipe.errors import DeviceError, InputError, UnsupportedError
from deploypipe.models import create_model
from deploypipe.targets import TargetProfile, load_target

CPU = TargetProfile(name="torch-cpu", backend="torch", device="cpu")
no_gpu = pytest.mark.skipif(gpu_missing_reason() is None, reason="this machine has a GPU")


@pytest.fixture(scope="module")
def engine(tiny_onnx):
    with TorchBackend().build(tiny_onnx, CPU) as eng:
        yield eng


def test_runs_the_checkpoint_beside_the_onnx_file_like_ort(engine, tiny_onnx):
    with create_backend("onnxruntime").build(tiny_onnx, load_target("cpu")) as ort_engine:
        feeds = ort_engine.feeds(3, seed=5)
        ref = ort_engine.run(feeds)[0]
    assert engine.input_names == ["input"]  # named by the ONNX file
    got = engine.run(feeds)[0]
    assert got.shape == (3, 10) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-3)


def test_module_input_is_copied_not_changed():
    model = create_model("test_resnet_cifar")
    target = dataclasses.replace(CPU, input_shape=(3, 32, 32), precision="fp16")
    before = next(model.parameters()).dtype
    with TorchBackend().build(model, target) as eng:
        assert next(eng.module.parameters()).dtype == torch.float16
    assert next(model.parameters()).dtype == before == torch.float32


def test_time_on_the_cpu_uses_the_host_clock(engine):
    stats = engine.time(batch=2, warmup=1, iterations=4)
    assert stats.n == 4 and stats.batch == 2 and stats.min > 0


def test_profile_layers_are_module_names_mapped_to_onnx_nodes(engine):
    layers = engine.profile_layers(batch=2, iterations=3, warmup=1)
    by_name = {l.name: l for l in layers}
    assert by_name["conv1"].onnx_node == "/conv1/Conv" and by_name["conv1"].op_type == "Conv2d"
    assert by_name["bn1"].onnx_nodes == ("/bn1/BatchNormalization",)
    assert by_name["fc"].onnx_node == "/fc/Gemm"
    assert list(by_name)[0] == "conv1"  # execution order
    assert sum(l.percentage for l in layers) == pytest.approx(100.0)
    assert all(l.timeMs == pytest.approx(l.averageMs * 3) for l in layers)
    assert not any(h for m in engine.module.modules() for h in m._forward_hooks.values())


def test_missing_checkpoint_is_one_sentence(fixed_onnx):
    with pytest.raises(UnsupportedError) as err:
        resolve_model(fixed_onnx)
    msg = err.value.sentence()
    assert "fixed.pt" in msg and "--checkpoint" in msg and "\n" not in msg


def test_unknown_input_shape_is_refused():
    with pytest.raises(InputError, match="input shape"):
        TorchBackend().build(create_model("test_resnet_cifar"), CPU)


def test_int8_is_refused(tiny_onnx):
    with pytest.raises(UnsupportedError, match="fp32 and fp16"):
        TorchBackend().build(tiny_onnx, dataclasses.replace(CPU, precision="int8"))


@no_gpu
def test_cuda_target_without_gpu_is_one_sentence(tiny_onnx):
    with pytest.raises(DeviceError) as err:
        TorchBackend().build(tiny_onnx, load_target("torch-cuda"))
    assert "CUDA" in err.value.sentence() and "\n" not in err.value.sentence()
