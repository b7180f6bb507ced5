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


def test_profile_layers_are_module_names_mapped_to_onnx_nodes(engine, tiny_onnx):
    layers = engine.profile_layers(batch=2, iterations=3, warmup=1)
    by_name = {l.name: l for l in layers}
    assert by_name["conv1"].onnx_node == "/conv1/Conv" and by_name["conv1"].op_type == "Conv2d"
    assert "bn1" not in by_name  # folded into conv1, as TensorRT and ONNX Runtime fold it
    with TorchBackend(fold_batchnorm=False).build(tiny_onnx, CPU) as unfolded:
        kept = {l.name: l for l in unfolded.profile_layers(batch=2, iterations=1, warmup=0)}
    assert kept["bn1"].onnx_nodes == ("/bn1/BatchNormalization",)
    assert by_name["fc"].onnx_node == "/fc/Gemm"
    assert list(by_name)[0] == "conv1"  # execution order
    assert sum(l.percentage for l in layers) == pytest.approx(100.0)
    assert all(l.timeMs == pytest.approx(l.averageMs * 3) for l in layers)
    assert not any(h for m in engine.module.modules() for h in m._forward_hooks.values())


def test_an_onnx_file_alone_runs_as_a_module_built_from_the_graph(fixed_onnx):
    """The latency table's sub-models and the loop's candidates have no checkpoint: the
    backend runs the graph itself, agrees with ONNX Runtime and maps layers to nodes."""
    assert not fixed_onnx.with_suffix(".pt").exists()
    with create_backend("onnxruntime").build(fixed_onnx, load_target("cpu")) as ort_engine:
        feeds = ort_engine.feeds(4, seed=3)
        expected = ort_engine.run(feeds)[0]
    with TorchBackend().build(fixed_onnx, CPU) as eng:
        np.testing.assert_allclose(eng.run(feeds)[0], expected, rtol=1e-4, atol=1e-4)
        assert eng.time(4, 1, 2).n == 2
        layers = eng.profile_layers(4, 2)
    assert {l.onnx_node for l in layers if l.op_type == "Conv2d"} >= {"/conv1/Conv"}


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


def test_fp32_math_is_ieee_inside_and_restored_after():
    from deploypipe.backends._cuda import torch_math

    before = (torch.backends.cudnn.conv.fp32_precision, torch.backends.cudnn.benchmark)
    with torch_math(tf32=False, benchmark=True):
        assert torch.backends.cudnn.conv.fp32_precision == "ieee"
        assert torch.backends.cuda.matmul.fp32_precision == "ieee"
        assert torch.backends.cudnn.benchmark is True
    assert (torch.backends.cudnn.conv.fp32_precision, torch.backends.cudnn.benchmark) == before
    with torch_math(tf32=True, benchmark=False):  # fp16: nothing to change but autotuning
        assert torch.backends.cudnn.conv.fp32_precision == before[0]


def test_a_torch_that_mixes_its_tf32_apis_is_retried_with_the_old_switches(tiny_onnx):
    calls = []

    with TorchBackend().build(tiny_onnx, CPU) as eng:
        def forward(*xs):
            calls.append(eng._legacy_tf32)
            if not eng._legacy_tf32:
                raise RuntimeError("you have used mix of the legacy and new APIs to set TF32")
            return xs[0]

        out = eng._call(forward, [torch.ones(1)])()
        assert calls == [False, True] and eng._legacy_tf32 and float(out) == 1.0
        with pytest.raises(RuntimeError, match="other"):  # any other error is not swallowed
            eng._call(lambda *xs: (_ for _ in ()).throw(RuntimeError("other")), [])()
