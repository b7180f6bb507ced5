"""Backends behind one contract (:class:`Backend` builds an :class:`Engine`), by name.

Each backend is registered with the module that implements it, imported only when the
backend is created, so listing backends needs neither tensorrt nor a GPU. A GPU backend
asked for on a machine without a GPU fails with one :class:`DeviceError` sentence; there is
never a silent fallback to the CPU. To add a backend, write its module and register a
:class:`BackendSpec` below.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

from .._registry import Registry
from ..errors import DeviceError, InternalError, UnsupportedError
from ..targets import TargetProfile
from ._gpu import gpu_missing_reason
from .base import Backend, Engine, LayerTime
from .feeds import TensorSpec, random_feeds


@dataclass(frozen=True)
class BackendSpec:
    """A backend's name, what it runs on, and where its class lives (``module:Class``)."""

    name: str
    description: str
    entry_point: str
    gpu_only: bool

    def load(self) -> type[Backend] | None:
        """The backend class, or ``None`` while its module is not written yet."""
        module_name, _, attr = self.entry_point.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                return None
            raise
        return getattr(module, attr)

    def unavailable_reason(self) -> str | None:
        """Why this backend cannot run here, or ``None`` when it can."""
        if self.gpu_only and (reason := gpu_missing_reason()):
            return reason
        cls = self.load()
        if cls is None:
            return "not implemented in this version of deploypipe yet"
        return cls().available()


BACKENDS: Registry[BackendSpec] = Registry("backend")
for _spec in (
    BackendSpec("onnxruntime", "ONNX Runtime: CPU, plus CUDA and TensorRT execution "
                "providers with onnxruntime-gpu", "deploypipe.backends.ort:OrtBackend", False),
    BackendSpec("tensorrt", "native TensorRT engines on an NVIDIA GPU (TensorRT 10 and 11)",
                "deploypipe.backends.tensorrt:TensorRTBackend", True),
    BackendSpec("torch", "PyTorch eager or compiled on an NVIDIA GPU, for GPUs without TensorRT",
                "deploypipe.backends.torch_cuda:TorchBackend", True),
):
    BACKENDS.add(_spec.name, _spec)


def create_backend(name: str) -> Backend:
    """The backend registered as ``name``; a GPU backend without a GPU is a DeviceError."""
    spec = BACKENDS.get(name)
    if spec.gpu_only and (reason := gpu_missing_reason()):
        raise DeviceError(f"backend {name!r} needs an NVIDIA GPU but {reason}",
                          hint="use --target cpu to run on the CPU with ONNX Runtime")
    cls = spec.load()
    if cls is None:
        raise UnsupportedError(f"backend {name!r} is not implemented in this version of "
                               "deploypipe yet", hint="use a target with backend 'onnxruntime'")
    return cls()


def backend_for_target(target: TargetProfile) -> Backend:
    """The backend that runs ``target``; checks the GPU before anything is built."""
    if target.requires_gpu and (reason := gpu_missing_reason()):
        raise DeviceError(f"target {target.name!r} needs an NVIDIA GPU but {reason}",
                          hint="use --target cpu to run on the CPU")
    if target.auto:
        return choose_gpu_backend(target)
    if target.backend is None:
        raise InternalError(f"target {target.name!r} has neither a backend nor auto = true")
    return create_backend(target.backend)


def choose_gpu_backend(target: TargetProfile) -> Backend:
    """``--target gpu``: the best available GPU backend (native TensorRT, then ONNX Runtime's
    TensorRT and CUDA providers, then PyTorch on CUDA), said in one log line."""
    from .chooser import choose_gpu_backend as choose

    return choose(target)


def list_backends() -> list[tuple[BackendSpec, str | None]]:
    """Every registered backend with the reason it cannot run here (``None``: it can)."""
    return [(spec, spec.unavailable_reason()) for _, spec in BACKENDS.items()]


__all__ = ["BACKENDS", "Backend", "BackendSpec", "Engine", "LayerTime", "TensorSpec",
           "backend_for_target", "choose_gpu_backend", "create_backend", "list_backends",
           "random_feeds"]
