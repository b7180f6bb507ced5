"""The backends ``deploypipe compare`` knows, each explicit about its device.

``torch`` and ``ort`` run on the CPU in fp32 (the references); ``torch-cuda``, ``ort-cuda``,
``ort-trt`` and ``trt`` run on the GPU in the precision of the ``--target`` profile. A name
never changes device on its own: a GPU name on a machine without what it needs is refused
in one sentence before anything runs.
"""
from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass
from typing import Callable

from ..errors import DeviceError, InputError
from ..targets import TargetProfile
from ._gpu import gpu_missing_reason
from .base import Backend


@dataclass(frozen=True)
class CompareBackend:
    """A name on the ``--backends`` list: what it runs and how its target is derived."""

    name: str
    label: str
    backend: str  # onnxruntime | tensorrt | torch
    providers: tuple[str, ...]
    gpu: bool
    needs: Callable[[], str | None]  # None: can run here, else what is missing

    def target(self, base: TargetProfile) -> TargetProfile:
        """``base`` (tolerances, batch, shapes) moved to this backend's device and runtime;
        CPU backends always run fp32."""
        return dataclasses.replace(
            base, name=f"{base.name}:{self.name}", backend=self.backend,
            providers=self.providers, device="cuda" if self.gpu else "cpu",
            precision=base.precision if self.gpu else "fp32", requires_gpu=self.gpu,
            auto=False)

    def make(self) -> Backend:
        from . import create_backend
        from .ort import OrtBackend
        from .torch_cuda import TorchBackend

        if self.backend == "onnxruntime":
            return OrtBackend(self.providers)
        if self.backend == "torch":
            return TorchBackend()
        return create_backend(self.backend)

    def check(self) -> None:
        """Refuse, in one sentence, a backend that cannot run on this machine."""
        if reason := self.needs():
            raise DeviceError(f"backend {self.name!r} ({self.label}) cannot run here: {reason}",
                              hint="leave it out of --backends or run on a machine with an "
                              "NVIDIA GPU (the GPU Docker image has every backend)")


def _nothing() -> str | None:
    return None


def _gpu_and(*extra: Callable[[], str | None]) -> Callable[[], str | None]:
    def needs() -> str | None:
        reasons = [r for r in (gpu_missing_reason(), *(f() for f in extra)) if r]
        return " and ".join(reasons) or None
    return needs


def _tensorrt() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return "the tensorrt Python package is not installed"
    return None


def _ort_provider(name: str) -> Callable[[], str | None]:
    def needs() -> str | None:
        import onnxruntime as ort

        if name not in ort.get_available_providers():
            return f"this onnxruntime {ort.__version__} has no {name} (install onnxruntime-gpu)"
        return None
    return needs


def _torch_cuda() -> str | None:
    import torch

    return None if torch.cuda.is_available() else f"torch {torch.__version__} has no CUDA device"


COMPARE_BACKENDS: dict[str, CompareBackend] = {b.name: b for b in (
    CompareBackend("torch", "PyTorch on the CPU", "torch", (), False, _nothing),
    CompareBackend("ort", "ONNX Runtime on the CPU", "onnxruntime", ("CPUExecutionProvider",),
                   False, _nothing),
    CompareBackend("torch-cuda", "PyTorch on CUDA", "torch", (), True, _gpu_and(_torch_cuda)),
    CompareBackend("ort-cuda", "ONNX Runtime's CUDA provider", "onnxruntime",
                   ("CUDAExecutionProvider",), True,
                   _gpu_and(_ort_provider("CUDAExecutionProvider"))),
    CompareBackend("ort-trt", "ONNX Runtime's TensorRT provider", "onnxruntime",
                   ("TensorrtExecutionProvider", "CUDAExecutionProvider"), True,
                   _gpu_and(_ort_provider("TensorrtExecutionProvider"))),
    CompareBackend("trt", "native TensorRT", "tensorrt", (), True, _gpu_and(_tensorrt)),
)}


def parse_backends(text: str) -> list[CompareBackend]:
    """``torch,ort,trt`` -> the backends, in order; at least two, no repeats."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in COMPARE_BACKENDS]
    if unknown:
        raise InputError(f"unknown backend {unknown[0]!r} for compare",
                         hint=f"choose from {', '.join(COMPARE_BACKENDS)}")
    if len(names) < 2 or len(set(names)) != len(names):
        raise InputError(f"compare needs at least two different backends, got {text!r}",
                         hint="for example --backends torch,ort,trt")
    return [COMPARE_BACKENDS[n] for n in names]
