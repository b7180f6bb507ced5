"""Small helpers shared by the model families: argument checks and initialisation."""
from __future__ import annotations

import math
import numbers
from typing import Iterable, Sequence

from torch import nn

from ..errors import InputError

Size2d = tuple[int, int]


def positive_int(what: str, value: object) -> int:
    """``value`` as an int >= 1 (numpy integers too), or an InputError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise InputError(f"{what} must be a positive integer, got {value!r}",
                         hint=f"pass {what}=N with N >= 1")
    return int(value)


def positive_float(what: str, value: object) -> float:
    """``value`` as a finite float > 0, or an InputError naming ``what``."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value <= 0:
        raise InputError(f"{what} must be a positive number, got {value!r}",
                         hint=f"pass for example {what}=0.5")
    return float(value)


def size2d(value: int | Sequence[int]) -> Size2d:
    """An input size given as N, (H, W) or (C, H, W) normalised to (H, W)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value, value)
    if isinstance(value, (tuple, list)) and len(value) == 3:
        value = value[1:]
    if not (isinstance(value, (tuple, list)) and len(value) == 2):
        raise InputError(f"input_size must be N, (H, W) or (C, H, W), got {value!r}",
                         hint="pass for example input_size=32 or input_size=(28, 28)")
    h, w = (positive_int("input_size", v) for v in value)
    return h, w


def choice(what: str, value: str, choices: Iterable[str]) -> str:
    """``value`` if it is one of ``choices``, else an InputError listing them."""
    choices = tuple(choices)
    if value not in choices:
        raise InputError(f"{what} must be one of {', '.join(map(repr, choices))}, got {value!r}",
                         hint=f"pass {what}={choices[0]!r} or leave it out")
    return value


def require_input(input_size: Size2d, total_stride: int, alternative: str = "") -> None:
    """Refuse an input smaller than the network's total stride on either side: its last
    feature map would be made of padding alone. ``alternative`` names another fix."""
    h, w = input_size
    if min(h, w) < total_stride:
        fix = f"use input_size >= {total_stride}" + (f" or {alternative}" if alternative else "")
        raise InputError(
            f"input {h}x{w} is smaller than the network's total stride of {total_stride}",
            hint=fix)


def init_conv_bn(model: nn.Module) -> None:
    """He init as torchvision: kaiming normal (fan_out) convs, zero conv bias, BN 1/0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def init_linear_normal(model: nn.Module, std: float = 0.01) -> None:
    """Linear layers ~ N(0, std) with zero bias, as torchvision's VGG and MobileNetV2."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, std)
            nn.init.zeros_(m.bias)

