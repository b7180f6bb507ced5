"""One registry of runtimes: every target resolves to one, the chooser and compare speak its
names, and each probe is asked once per process."""
from __future__ import annotations

import dataclasses

import pytest

from deploypipe.backends import BACKENDS, list_backends, runtimes
from deploypipe.backends.chooser import gpu_runtimes
from deploypipe.backends.runtimes import (GPU_PREFERENCE, RUNTIMES, Requirement, Runtime,
                                          runtime_for_target)
from deploypipe.targets import load_target


@pytest.mark.parametrize("target, name", [("cpu", "ort"), ("cpu-int8", "ort"),
                                          ("gpu-trt-fp16", "trt"), ("jetson-orin", "trt"),
                                          ("torch-cuda", "torch-cuda")])
def test_every_fixed_target_resolves_to_a_registered_runtime(target, name):
    assert runtime_for_target(load_target(target)) is RUNTIMES.get(name)


def test_onnxruntime_providers_pick_the_runtime():
    cpu = load_target("cpu")
    cuda = dataclasses.replace(cpu, device="cuda", providers=("CUDAExecutionProvider",),
                               requires_gpu=True)
    assert runtime_for_target(cuda).name == "ort-cuda"
    custom = runtime_for_target(dataclasses.replace(cpu, providers=("OpenVINOExecutionProvider",
                                                                    "CPUExecutionProvider")))
    assert custom.name == "onnxruntime" and custom.providers[0] == "OpenVINOExecutionProvider"
    assert [r.name for r in custom.needs] == ["onnxruntime's OpenVINOExecutionProvider"]


def test_chooser_and_families_use_the_registry_names():
    assert [r.name for r in gpu_runtimes()] == list(GPU_PREFERENCE)
    assert all(RUNTIMES.get(r).gpu for r in GPU_PREFERENCE)
    for name, spec in BACKENDS.items():
        assert RUNTIMES.get(spec.runtime).backend == name
    assert dict((s.name, r) for s, r in list_backends())["onnxruntime"] is None


def test_a_probe_is_asked_once_per_process():
    calls = []
    need = Requirement("test: a counted probe", lambda: calls.append(1) or "absent")
    runtime = Runtime("x", "x", "onnxruntime", needs=(need,))
    try:
        assert runtime.unavailable() == runtime.unavailable() == "absent"
        assert calls == [1]
        runtimes.forget_probes()
        runtime.unavailable()
        assert calls == [1, 1]
    finally:
        runtimes.forget_probes()


def test_precision_is_checked_before_any_probe():
    probed = []
    runtime = Runtime("x", "x", "torch", precisions=("fp32", "fp16"),
                      needs=(Requirement("x", lambda: probed.append(1), cached=False),))
    assert runtime.unavailable(load_target("gpu-trt-int8")) == "it runs fp32 and fp16 only, not int8"
    assert probed == []


def test_the_first_missing_requirement_stops_the_probes(monkeypatch):
    monkeypatch.setattr(runtimes, "gpu_missing_reason", lambda: "no NVIDIA GPU was found")
    assert RUNTIMES.get("trt").unavailable() == "no NVIDIA GPU was found"


def test_cpu_runtimes_move_a_gpu_target_to_the_cpu_in_fp32():
    sub = RUNTIMES.get("ort").target(load_target("gpu-trt-fp16"))
    assert (sub.device, sub.precision, sub.backend, sub.requires_gpu) == \
        ("cpu", "fp32", "onnxruntime", False)
    assert sub.tolerances == load_target("gpu-trt-fp16").tolerances
