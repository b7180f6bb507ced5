"""Device memory, streams and CUDA-event timing for the GPU engines, through ``torch.cuda``.

deploypipe already depends on PyTorch, and the GPU image installs a CUDA build of it, so
``torch.cuda`` gives device buffers (tensors whose ``data_ptr()`` TensorRT binds), streams
(``stream.cuda_stream`` is the handle TensorRT enqueues on) and events without another
CUDA binding (cuda-python, pycuda). torch is imported inside the functions only.
"""
from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np

from ..errors import DeviceError, InputError

if TYPE_CHECKING:
    import torch

_MAX_SAMPLES = 1_000_000


def require_cuda() -> None:
    """Fail in one sentence unless torch can reach an NVIDIA GPU."""
    import torch

    if not torch.cuda.is_available():
        raise DeviceError(f"this GPU engine needs torch with CUDA, but torch {torch.__version__} "
                          "sees no CUDA device", hint="install deploypipe[gpu] on a machine "
                          "with an NVIDIA GPU, or use --target cpu")


MIXED_TF32_APIS = "legacy and new APIs"  # in torch's error when the two TF32 APIs disagree


@contextlib.contextmanager
def torch_math(*, tf32: bool, benchmark: bool, legacy: bool = False) -> Iterator[None]:
    """PyTorch's fp32 math and cuDNN autotuning for the block, restored after it.

    ``tf32=False`` makes fp32 convolutions and matrix products IEEE fp32 (TF32 is on by
    default for cuDNN convolutions); ``tf32=True`` leaves torch's settings as they are (an
    fp16 model has no fp32 math to speed up). torch 2.9 and later spell this
    ``fp32_precision = "ieee"`` on ``torch.backends.cudnn.conv``/``.rnn`` and
    ``torch.backends.cuda.matmul``, and deprecate the ``allow_tf32`` switches; torch refuses
    to read the old switches once the new ones disagree with them, so ``legacy=True`` (and
    torch before 2.9) uses the old switches alone."""
    import torch

    slots: list[tuple[object, str, object]] = [(torch.backends.cudnn, "benchmark", benchmark)]
    if not tf32:
        slots += _ieee_slots(torch, legacy)
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in slots]
    try:
        for obj, name, value in slots:
            setattr(obj, name, value)
        yield
    finally:
        for obj, name, value in reversed(saved):
            setattr(obj, name, value)


def _ieee_slots(torch, legacy: bool) -> list[tuple[object, str, object]]:
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    conv, rnn = getattr(cudnn, "conv", None), getattr(cudnn, "rnn", None)
    if not legacy and conv is not None and hasattr(conv, "fp32_precision"):
        return [(conv, "fp32_precision", "ieee"), (rnn, "fp32_precision", "ieee"),
                (matmul, "fp32_precision", "ieee")]
    return [(cudnn, "allow_tf32", False), (matmul, "allow_tf32", False)]


def torch_dtype(dtype: np.dtype) -> "torch.dtype":
    """The torch dtype of a numpy dtype (bool, ints, floats)."""
    import torch

    try:
        return torch.from_numpy(np.zeros(0, dtype=dtype)).dtype
    except TypeError:
        raise InputError(f"dtype {dtype} has no torch equivalent",
                         hint="use float or integer inputs") from None


def device_empty(shape: tuple[int, ...], dtype: np.dtype) -> "torch.Tensor":
    """An uninitialised, contiguous CUDA tensor."""
    import torch

    return torch.empty(tuple(int(d) for d in shape), dtype=torch_dtype(dtype), device="cuda")


def to_device(array: np.ndarray, stream: "torch.cuda.Stream") -> "torch.Tensor":
    """``array`` copied to the GPU on ``stream`` (the copy is ordered before later work)."""
    import torch

    with torch.cuda.stream(stream):
        return torch.from_numpy(np.ascontiguousarray(array)).to("cuda", non_blocking=False)


def cuda_event_samples(call: Callable[[], object], stream: "torch.cuda.Stream", *, warmup: int,
                       iterations: int, min_seconds: float = 0.0) -> list[float]:
    """Milliseconds per ``call`` between CUDA events recorded on ``stream`` around it.

    Each iteration waits for its end event, so a sample is one whole inference on the
    device (idle gaps while the host launches kernels included), never overlapped runs."""
    import torch

    if warmup < 0 or iterations <= 0:
        raise InputError(f"cannot time {iterations} iterations after {warmup} warm-up runs",
                         hint="use warmup >= 0 and iterations >= 1")
    for _ in range(warmup):
        call()
    stream.synchronize()
    samples: list[float] = []
    deadline = time.perf_counter() + min_seconds
    while len(samples) < iterations or (time.perf_counter() < deadline
                                        and len(samples) < _MAX_SAMPLES):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record(stream)
        call()
        end.record(stream)
        end.synchronize()
        samples.append(float(start.elapsed_time(end)))
    return samples
