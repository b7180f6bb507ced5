"""Availability: a GPU counts when work runs on it; CUDA_VISIBLE_DEVICES is respected; a
TensorRT that imports but cannot build makes ``--target gpu`` take the next backend."""
from __future__ import annotations

import dataclasses
import logging
import sys
import types

import pytest

from deploypipe.backends import chooser, runtimes
from deploypipe.backends._gpu import probe_gpu
from deploypipe.measure import fingerprint as fp_mod
from deploypipe.targets import load_target


def _fail(reason):
    return lambda: reason


def test_a_listed_gpu_on_which_no_kernel_runs_does_not_count():
    reason = probe_gpu(None, _fail("NVIDIA H200"), _fail("a CUDA kernel failed to run (boom)"),
                       _fail(None))
    assert reason == "an NVIDIA GPU is listed but a CUDA kernel failed to run (boom)"
    assert probe_gpu(None, _fail("NVIDIA H200"), _fail(None), _fail("unused")) is None


def test_without_a_cuda_torch_the_driver_context_decides():
    listed = _fail("NVIDIA H200")
    assert probe_gpu(None, listed, _fail("no torch"), _fail(None)) is None
    reason = probe_gpu(None, listed, _fail("no torch"),
                       _fail("the CUDA driver's cuInit failed with error 100"))
    assert reason.endswith("cuInit failed with error 100")


@pytest.mark.parametrize("visible", ["", "-1", " "])
def test_cuda_visible_devices_can_hide_every_gpu(visible):
    called = []
    reason = probe_gpu(visible, lambda: called.append(1) or "NVIDIA H200", _fail(None), _fail(None))
    assert "hides every GPU" in reason and not called


def test_no_listed_gpu_is_the_plain_sentence():
    assert probe_gpu("0", _fail(None), _fail(None), _fail(None)) == \
        "no NVIDIA GPU was found on this machine"


class _Nvml:
    """pynvml with two GPUs: index 0 an H100, index 1 (UUID GPU-b) an H200."""

    names = {0: "NVIDIA H100", 1: "NVIDIA H200"}

    def nvmlInit(self):
        pass

    def nvmlShutdown(self):
        pass

    def nvmlDeviceGetCount(self):
        return 2

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetHandleByUUID(self, uuid):
        return {"GPU-b": 1}[uuid]

    def nvmlDeviceGetName(self, handle):
        return self.names[handle]

    def nvmlSystemGetDriverVersion(self):
        return "580.1"

    def nvmlSystemGetCudaDriverVersion(self):
        return 13000


@pytest.mark.parametrize("visible,name", [(None, "NVIDIA H100"), ("1", "NVIDIA H200"),
                                          ("GPU-b,0", "NVIDIA H200"), ("-1", None)])
def test_the_fingerprint_names_the_gpu_cuda_sees(monkeypatch, visible, name):
    monkeypatch.setitem(sys.modules, "pynvml", _Nvml())
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    fp_mod.gpu_info.cache_clear()
    fp_mod.hardware_fingerprint.cache_clear()
    try:
        assert fp_mod.gpu_info()[0] == name
        assert fp_mod.hardware_fingerprint().cuda_visible_devices == visible
    finally:
        fp_mod.gpu_info.cache_clear()
        fp_mod.hardware_fingerprint.cache_clear()


def _fake_tensorrt(builds: bool):
    """Enough of TensorRT's builder API for the one-layer probe; ``builds`` decides whether
    ``build_serialized_network`` returns an engine (a TensorRT that cannot use this GPU
    returns None)."""
    network = types.SimpleNamespace(
        add_input=lambda name, dtype, shape: ("input", name),
        add_activation=lambda x, kind: types.SimpleNamespace(get_output=lambda i: ("relu", x)),
        mark_output=lambda t: None)
    builder = types.SimpleNamespace(
        create_network=lambda flags: network, create_builder_config=lambda: object(),
        build_serialized_network=lambda net, cfg: b"engine" if builds else None)
    logger = types.SimpleNamespace(ERROR=3)
    return types.SimpleNamespace(
        __version__="11.4.0", Logger=type("Logger", (), {"ERROR": 3, "__init__": lambda s, l: None}),
        Builder=lambda log: builder, float32="float32",
        ActivationType=types.SimpleNamespace(RELU="relu"),
        Runtime=lambda log: types.SimpleNamespace(deserialize_cuda_engine=lambda b: object()),
        _logger=logger)


def test_a_tensorrt_that_cannot_build_falls_back_with_one_line(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_tensorrt(builds=False))
    monkeypatch.setattr(runtimes.importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(runtimes, "gpu_missing_reason", lambda: None)
    runtimes.forget_probes()
    chooser._announced.clear()
    taken = []
    options = [dataclasses.replace(runtimes.RUNTIMES.get("trt"),
                                   factory=lambda: taken.append("tensorrt")),
               runtimes.Runtime("torch-cuda", "PyTorch on CUDA (cuDNN)", "torch", gpu=True,
                                factory=lambda: taken.append("torch") or "torch backend")]
    try:
        with caplog.at_level(logging.INFO, logger="deploypipe"):
            assert chooser.choose_gpu_backend(load_target("gpu"), options) == "torch backend"
        assert taken == ["torch"]
        lines = [r.getMessage() for r in caplog.records if "running on" in r.getMessage()]
        assert len(lines) == 1
        assert "no native TensorRT: TensorRT 11.4.0 imports but could not build an engine" \
            in lines[0]
    finally:
        runtimes.forget_probes()


def test_a_tensorrt_that_builds_is_taken(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_tensorrt(builds=True))
    monkeypatch.setattr(runtimes.importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(runtimes, "gpu_missing_reason", lambda: None)
    runtimes.forget_probes()
    try:
        assert runtimes.RUNTIMES.get("trt").unavailable(load_target("gpu")) is None
    finally:
        runtimes.forget_probes()
