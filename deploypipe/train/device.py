"""Where training runs and in what arithmetic: the device (``cpu``, ``cuda``, ``cuda:N``),
mixed precision (bfloat16 autocast: no loss scaling needed, on an Ampere-or-later GPU or a
CPU) and the channels-last layout that cuDNN's tensor-core convolutions read directly."""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import Tensor, nn

from ..errors import DeviceError, InputError


def training_device(text: str | None, model: nn.Module) -> torch.device:
    """The device ``text`` names (``None``: where the model's parameters are), checked."""
    from .loaders import model_device

    return model_device(model) if text is None else check_device(text)


def check_device(text: str) -> torch.device:
    """The device ``text`` names, if training can run there (else one sentence)."""
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise InputError(f"unknown training device {text!r}", hint="use cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise InputError(f"training on {device.type!r} is not supported", hint="use cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"training on {text} needs a CUDA GPU, but torch {torch.__version__} sees none",
                              hint="use --device cpu, or install a CUDA build of torch on a GPU machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"training on {text} needs GPU {device.index}, but only "
                              f"{torch.cuda.device_count()} are visible", hint="pick a visible GPU")
    return device


def device_options(device: str | None, amp: bool) -> dict:
    """TrainConfig's placement fields for ``--device``/``--amp``: channels-last on a GPU."""
    return {"device": device, "amp": amp, "channels_last": bool(device and device.startswith("cuda"))}


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bfloat16 mixed precision for the forward pass and the loss (``enabled``), else nothing."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def laid_out(x: Tensor, channels_last: bool) -> Tensor:
    """A 4-d batch in the channels-last layout when asked (other shapes as they are)."""
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x


@contextlib.contextmanager
def placed(model: nn.Module, teacher: nn.Module | None, device: torch.device,
           channels_last: bool) -> Iterator[None]:
    """The model (and teacher) on ``device`` and, when asked, channels-last for the run; each
    back where and as it was afterwards, so pruning and export see what they saw before."""
    from .loaders import model_device

    homes = [(m, model_device(m)) for m in (model, teacher) if m is not None]
    for m, _ in homes:
        m.to(device)
        if channels_last:
            m.to(memory_format=torch.channels_last)
    try:
        yield
    finally:
        for m, home in homes:
            if channels_last:
                m.to(memory_format=torch.contiguous_format)
            m.to(home)
