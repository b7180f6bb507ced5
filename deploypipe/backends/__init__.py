"""Backends behind one contract (:class:`Backend` builds an :class:`Engine`), by name.

The names live in one registry (:mod:`.runtimes`): the engine families a target profile
names (:data:`BACKENDS`) and the concrete runtimes they run as (:data:`RUNTIMES`), each with
what it needs and one availability probe. A family's module is imported only when it is
created, so listing backends needs neither tensorrt nor a GPU. A GPU backend asked for on a
machine without a GPU fails with one :class:`DeviceError` sentence; there is never a silent
fallback to the CPU. To add a backend, write its module and register it in :mod:`.runtimes`.
"""
from __future__ import annotations

from ..targets import TargetProfile
from .base import Backend, Engine, LayerTime
from .feeds import TensorSpec, random_feeds
from .runtimes import (BACKENDS, RUNTIMES, BackendSpec, Runtime, backend_for_target,
                       create_backend, runtime_for_target)


def choose_gpu_backend(target: TargetProfile) -> Backend:
    """``--target gpu``: the best available GPU backend (native TensorRT, then ONNX Runtime's
    TensorRT and CUDA providers, then PyTorch on CUDA), said in one log line."""
    from .chooser import choose_gpu_backend as choose

    return choose(target)


def list_backends() -> list[tuple[BackendSpec, str | None]]:
    """Every registered backend with the reason it cannot run here (``None``: it can)."""
    return [(spec, spec.unavailable_reason()) for _, spec in BACKENDS.items()]


__all__ = ["BACKENDS", "RUNTIMES", "Backend", "BackendSpec", "Engine", "LayerTime", "Runtime",
           "TensorSpec", "backend_for_target", "choose_gpu_backend", "create_backend",
           "list_backends", "random_feeds", "runtime_for_target"]
