"""Is there a usable NVIDIA GPU here? One answer shared by every GPU backend.

A GPU counts when work can run on it, not when a library or NVML merely lists one: a
driver without a working CUDA runtime, a GPU hidden by ``CUDA_VISIBLE_DEVICES``, a
container started without ``--gpus`` (NVML still answers there) or a CUDA build of torch
on a too-old driver all list a device on which nothing runs. So the probe opens a CUDA
context and runs a tiny kernel through torch when torch is a CUDA build, and opens a
context with the driver API (``libcuda``) otherwise. The answer is cached per process.
"""
from __future__ import annotations

import ctypes
import functools
import importlib.metadata as md
import os
from typing import Callable

from ..measure.fingerprint import gpu_info, visible_devices
from ..utils.log import get_logger

log = get_logger("backends")


def gpu_missing_reason() -> str | None:
    """``None`` when a CUDA context opens on a visible NVIDIA GPU and a kernel runs there,
    else a phrase saying why not (for "needs an NVIDIA GPU but ...")."""
    return _probe()


@functools.lru_cache(maxsize=1)
def _probe() -> str | None:
    return probe_gpu(visible_devices(), lambda: gpu_info()[0], _torch_kernel_runs,
                     _driver_context_opens)


def probe_gpu(visible: str | None, listed: Callable[[], str | None],
              kernel: Callable[[], str | None], context: Callable[[], str | None]) -> str | None:
    """The probe's logic with its steps passed in (tests pass fakes): the devices
    ``CUDA_VISIBLE_DEVICES`` leaves, a listed GPU, then a kernel through torch where torch
    can (``kernel`` returns ``"no torch"`` when it cannot try), else a driver context."""
    if visible is not None and visible.strip() in ("", "-1", "none", "NoDevFiles"):
        return f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU"
    if listed() is None:
        return "no NVIDIA GPU was found on this machine"
    reason = kernel()
    if reason == "no torch":
        reason = context()
    if reason is not None:
        log.info("an NVIDIA GPU is listed but cannot run work: %s", reason)
        return f"an NVIDIA GPU is listed but {reason}"
    return None


def _torch_kernel_runs() -> str | None:
    """``None`` when torch opens a CUDA context and a small kernel gives the right answer;
    ``"no torch"`` when torch is absent or a CPU-only build."""
    try:
        version = md.version("torch")
    except md.PackageNotFoundError:
        return "no torch"
    if "+cpu" in version:
        return "no torch"
    try:
        import torch

        if not torch.cuda.is_available():
            return f"torch {version} cannot open a CUDA context (driver too old for its CUDA?)"
        x = torch.arange(64, dtype=torch.float32, device="cuda")
        total = float((x * 2).sum().item())
    except Exception as exc:  # a driver/runtime mismatch surfaces here as a RuntimeError
        return f"a CUDA kernel failed to run ({(str(exc).splitlines() or [''])[0][:160]})"
    return None if total == 4032.0 else f"a CUDA kernel returned {total}, not 4032"


def _driver_context_opens() -> str | None:
    """``None`` when the CUDA driver API initialises and opens a context on device 0."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1" if os.name != "nt" else "nvcuda.dll")
    except OSError:
        return "the CUDA driver library (libcuda) cannot be loaded"
    device, ctx = ctypes.c_int(), ctypes.c_void_p()
    steps = (("cuInit", (0,)), ("cuDeviceGet", (ctypes.byref(device), 0)),
             ("cuDevicePrimaryCtxRetain", (ctypes.byref(ctx), device)))
    for name, args in steps:
        code = getattr(cuda, name)(*args)
        if code != 0:
            return f"the CUDA driver's {name} failed with error {code}"
    cuda.cuDevicePrimaryCtxRelease(device)
    return None
