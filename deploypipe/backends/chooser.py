"""``--target gpu``: the best GPU runtime available here, said in one log line.

The order is :data:`~.runtimes.GPU_PREFERENCE`, by expected speed on NVIDIA GPUs: native
TensorRT, ONNX Runtime's TensorRT provider, ONNX Runtime's CUDA provider, then PyTorch on
CUDA (cuDNN). Each runtime answers its own availability probe (:mod:`.runtimes`); the first
that can run is taken. Without a GPU, or with a GPU but none of them usable, the answer is a
DeviceError sentence that names what is missing: never a silent fallback to the CPU.
"""
from __future__ import annotations

import logging
from typing import Sequence

from ..errors import DeviceError
from ..targets import TargetProfile
from ..utils.log import get_logger
from . import runtimes
from .base import Backend
from .runtimes import GPU_PREFERENCE, RUNTIMES, Runtime

log = get_logger("backends")
_announced: set[tuple[str, str]] = set()  # say each choice once per process, not per build


def gpu_runtimes() -> list[Runtime]:
    """The GPU runtimes in order of preference."""
    return [RUNTIMES.get(name) for name in GPU_PREFERENCE]


def choose_gpu_runtime(target: TargetProfile,
                       candidates: Sequence[Runtime] | None = None) -> Runtime:
    """The first runtime of ``candidates`` (default: :func:`gpu_runtimes`) that can run
    ``target`` here; logs which and why the ones before it could not."""
    if reason := runtimes.gpu_missing_reason():
        raise DeviceError(f"target {target.name!r} needs an NVIDIA GPU but {reason}",
                          hint="use --target cpu to run on the CPU")
    skipped = []
    for runtime in gpu_runtimes() if candidates is None else candidates:
        reason = runtime.unavailable(target)
        if reason is None:
            _announce(target, runtime.label, skipped)
            return runtime
        skipped.append(f"no {runtime.label}: {reason}")
    raise DeviceError(f"target {target.name!r} found an NVIDIA GPU but no GPU backend can run "
                      f"here ({'; '.join(skipped)})",
                      hint="install deploypipe[gpu] or use the GPU Docker image")


def choose_gpu_backend(target: TargetProfile,
                       candidates: Sequence[Runtime] | None = None) -> Backend:
    """The backend of :func:`choose_gpu_runtime`'s pick."""
    return choose_gpu_runtime(target, candidates).create()


def _announce(target: TargetProfile, label: str, skipped: list[str]) -> None:
    tail = f" ({'; '.join(skipped)})" if skipped else ""
    first = (target.name, label) not in _announced
    _announced.add((target.name, label))
    level = logging.INFO if first else logging.DEBUG
    log.log(level, "target %r: running on %s, the best GPU backend available here%s",
            target.name, label, tail)
