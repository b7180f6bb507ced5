"""``--target gpu``: the chooser's order, its one log line, and its refusals."""
from __future__ import annotations

import logging

import pytest

from deploypipe.backends import chooser, runtimes
from deploypipe.backends.base import Backend
from deploypipe.backends.chooser import choose_gpu_backend, gpu_runtimes
from deploypipe.backends.ort import OrtBackend
from deploypipe.backends.runtimes import Requirement, Runtime
from deploypipe.errors import DeviceError
from deploypipe.targets import load_target


class _Named(Backend):
    def __init__(self, name: str):
        self.name = name

    def build(self, onnx_path, target, *, cache_dir=None):
        raise NotImplementedError


def _option(key: str, reason: str | None) -> Runtime:
    return Runtime(key, f"backend {key}", "onnxruntime", gpu=True,
                   needs=(Requirement(key, lambda: reason, cached=False),),
                   factory=lambda: _Named(key))


@pytest.fixture
def gpu_here(monkeypatch):
    """Pretend an NVIDIA GPU is visible."""
    monkeypatch.setattr(runtimes, "gpu_missing_reason", lambda: None)


def test_first_usable_option_wins_and_is_announced_once(gpu_here, caplog):
    options = [_option("a", "not installed"), _option("b", None), _option("c", None)]
    chooser._announced.clear()
    with caplog.at_level(logging.DEBUG, logger="deploypipe"):
        first = choose_gpu_backend(load_target("gpu"), options)
        second = choose_gpu_backend(load_target("gpu"), options)
    assert first.name == second.name == "b"
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(infos) == 1  # one line per process, not per build
    line = infos[0].getMessage()
    assert "backend b" in line and "no backend a: not installed" in line and "\n" not in line


def test_no_usable_backend_names_every_reason(gpu_here):
    options = [_option("a", "tensorrt missing"), _option("b", "no provider")]
    with pytest.raises(DeviceError) as err:
        choose_gpu_backend(load_target("gpu"), options)
    msg = err.value.sentence()
    assert "tensorrt missing" in msg and "no provider" in msg and "\n" not in msg


def test_no_gpu_is_one_sentence_before_any_probe(monkeypatch):
    monkeypatch.setattr(runtimes, "gpu_missing_reason", lambda: "no NVIDIA GPU was found")
    probed = []
    option = Runtime("a", "a", "onnxruntime", gpu=True,
                     needs=(Requirement("a", lambda: probed.append(1) or None, cached=False),),
                     factory=lambda: _Named("a"))
    with pytest.raises(DeviceError, match="needs an NVIDIA GPU") as err:
        choose_gpu_backend(load_target("gpu"), [option])
    assert probed == [] and "--target cpu" in err.value.sentence()


def test_preference_order():
    assert [r.name for r in gpu_runtimes()] == ["trt", "ort-trt", "ort-cuda", "torch-cuda"]


def test_real_probes_on_this_machine_explain_themselves(gpu_here):
    """Here: no tensorrt, no onnxruntime-gpu, a CPU-only torch, so every option says why."""
    with pytest.raises(DeviceError) as err:
        choose_gpu_backend(load_target("gpu"))
    msg = err.value.sentence()
    assert "tensorrt Python package" in msg and "onnxruntime-gpu" in msg
    assert "no CUDA device" in msg


def test_int8_rules_out_backends_without_an_int8_path():
    int8 = load_target("gpu-trt-int8")
    options = {r.name: r for r in gpu_runtimes()}
    assert "int8" in options["ort-cuda"].unavailable(int8)
    assert "fp32 and fp16" in options["torch-cuda"].unavailable(int8)


def test_ort_choice_fills_the_auto_target():
    resolved = OrtBackend(("TensorrtExecutionProvider", "CUDAExecutionProvider")).resolve(
        load_target("gpu"))
    assert resolved.backend == "onnxruntime" and resolved.precision == "fp16"
    assert resolved.providers == ("TensorrtExecutionProvider", "CUDAExecutionProvider")
    assert resolved.tolerances == load_target("gpu").tolerances
