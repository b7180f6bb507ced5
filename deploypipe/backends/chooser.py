"""``--target gpu``: the best GPU backend available here, said in one log line.

The order is by expected speed on NVIDIA GPUs: native TensorRT, ONNX Runtime's TensorRT
provider, ONNX Runtime's CUDA provider, then PyTorch on CUDA (cuDNN). Each option probes
what it needs without importing heavy libraries where it can; the first that can run is
built. Without a GPU, or with a GPU but none of them usable, the answer is a DeviceError
sentence that names what is missing: never a silent fallback to the CPU.
"""
from __future__ import annotations

import ctypes.util
import functools
import importlib.util
import logging
from dataclasses import dataclass
from typing import Callable, Sequence

from ..errors import DeviceError
from ..targets import TargetProfile
from ..utils.log import get_logger
from ._gpu import gpu_missing_reason
from .base import Backend

log = get_logger("backends")
_announced: set[tuple[str, str]] = set()  # say each choice once per process, not per build


@dataclass(frozen=True)
class GpuOption:
    """One way to run on the GPU: how to probe for it and how to make its backend."""

    key: str
    label: str
    probe: Callable[[TargetProfile], str | None]  # None: usable, else why not (a phrase)
    make: Callable[[], Backend]


def choose_gpu_backend(target: TargetProfile,
                       options: Sequence[GpuOption] | None = None) -> Backend:
    """The backend of the first usable option for ``target``; logs which and why."""
    if reason := gpu_missing_reason():
        raise DeviceError(f"target {target.name!r} needs an NVIDIA GPU but {reason}",
                          hint="use --target cpu to run on the CPU")
    options = gpu_options() if options is None else options
    skipped = []
    for option in options:
        reason = option.probe(target)
        if reason is None:
            _announce(target, option.label, skipped)
            return option.make()
        skipped.append(f"no {option.label}: {reason}")
    raise DeviceError(f"target {target.name!r} found an NVIDIA GPU but no GPU backend can run "
                      f"here ({'; '.join(skipped)})",
                      hint="install deploypipe[gpu] or use the GPU Docker image")


def _announce(target: TargetProfile, label: str, skipped: list[str]) -> None:
    tail = f" ({'; '.join(skipped)})" if skipped else ""
    first = (target.name, label) not in _announced
    _announced.add((target.name, label))
    level = logging.INFO if first else logging.DEBUG
    log.log(level, "target %r: running on %s, the best GPU backend available here%s",
            target.name, label, tail)


def gpu_options() -> list[GpuOption]:
    """The GPU backends in order of preference."""
    from .ort import OrtBackend
    from .tensorrt import TensorRTBackend
    from .torch_cuda import TorchBackend

    return [
        GpuOption("tensorrt", "native TensorRT", _native_trt, TensorRTBackend),
        GpuOption("ort-tensorrt", "ONNX Runtime's TensorRT provider", _ort_trt,
                  lambda: OrtBackend(("TensorrtExecutionProvider", "CUDAExecutionProvider"))),
        GpuOption("ort-cuda", "ONNX Runtime's CUDA provider", _ort_cuda,
                  lambda: OrtBackend(("CUDAExecutionProvider",))),
        GpuOption("torch", "PyTorch on CUDA (cuDNN)", _torch_cuda, TorchBackend),
    ]


def _native_trt(target: TargetProfile) -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return "the tensorrt Python package is not installed"
    return tensorrt_build_fails()


@functools.lru_cache(maxsize=1)
def tensorrt_build_fails() -> str | None:
    """``None`` when TensorRT builds and deserializes a one-layer engine here, else why not:
    a TensorRT whose libraries load but that does not support this GPU, or whose CUDA does
    not match the driver, imports fine and fails only when it builds."""
    try:
        import tensorrt as trt

        return _tiny_engine_fails(trt)
    except Exception as exc:  # the bindings raise their own types, all with text
        return f"TensorRT imports but cannot build an engine here ({_first_line(exc)})"


def _tiny_engine_fails(trt) -> str | None:
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    x = network.add_input("x", trt.float32, (1, 8))
    network.mark_output(network.add_activation(x, trt.ActivationType.RELU).get_output(0))
    data = builder.build_serialized_network(network, builder.create_builder_config())
    if data is None:
        return f"TensorRT {trt.__version__} imports but could not build an engine on this GPU"
    if trt.Runtime(logger).deserialize_cuda_engine(bytes(data)) is None:
        return f"TensorRT {trt.__version__} built an engine it cannot load on this GPU"
    return None


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _ort_trt(target: TargetProfile) -> str | None:
    if "TensorrtExecutionProvider" not in _ort_providers():
        return "onnxruntime-gpu is not installed"
    if ctypes.util.find_library("nvinfer") is None:
        return "the TensorRT library (libnvinfer) is not on the library path"
    return None


def _ort_cuda(target: TargetProfile) -> str | None:
    if target.precision == "int8":
        return "it has no int8 path without TensorRT"
    if "CUDAExecutionProvider" not in _ort_providers():
        return "onnxruntime-gpu is not installed"
    return None


def _torch_cuda(target: TargetProfile) -> str | None:
    import torch

    if target.precision == "int8":
        return "it runs fp32 and fp16 only"
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} sees no CUDA device"
    return None


@functools.lru_cache(maxsize=1)
def _ort_providers() -> tuple[str, ...]:
    import onnxruntime as ort

    return tuple(ort.get_available_providers())
