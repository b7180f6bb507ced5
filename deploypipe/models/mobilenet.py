"""MobileNetV2 (Sandler et al. 2018) with torchvision-compatible state_dict keys.

Keys, shapes and the parameter count match ``torchvision.models.mobilenet_v2``:
``features.0`` is the stem (conv, BN, ReLU6), ``features.1..17`` the inverted residual
blocks (``features.N.conv.*``), ``features.18`` the last 1x1 conv, ``classifier.1`` the
Linear. Channel counts are rounded as torchvision's ``_make_divisible``.

Small inputs (below 64 pixels a side) get ``stem="cifar"`` automatically: the stem conv
(``features.0.0``) and the first stride-2 block (``features.2`` in the standard layout,
the first 24-channel block) run at stride 1. The total stride drops from 32 to 8, so
32x32 ends at 4x4, 28x28 at 4x4 and 8x8 at 1x1; no key or shape changes.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from ._layers import (Size2d, choice, init_conv_bn, init_linear_normal, positive_float,
                      require_input)
from ._registry import register_model

SMALL_INPUT = 64
# t (expansion), c (channels), n (blocks), s (stride of the first block), as in the paper.
STANDARD = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
            (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
Setting = Sequence[tuple[int, int, int, int]]


def make_divisible(v: float, divisor: int) -> int:
    """Round ``v`` to a multiple of ``divisor`` losing at most 10% (torchvision's rule)."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def conv_bn_relu6(cin: int, cout: int, kernel: int, stride: int = 1,
                  groups: int = 1) -> nn.Sequential:
    """Conv (no bias), BN, ReLU6: torchvision's ``Conv2dNormActivation`` keys (.0, .1)."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout), nn.ReLU6())


class InvertedResidual(nn.Module):
    """1x1 expand (skipped when t == 1), 3x3 depthwise, 1x1 linear projection; a
    residual add when the stride is 1 and the channel count is unchanged."""

    def __init__(self, cin: int, cout: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = int(round(cin * expand_ratio))
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(conv_bn_relu6(cin, hidden, 1))
        layers += [conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)
        self.use_res_connect = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return out + x if self.use_res_connect else out


class MobileNetV2(nn.Module):
    """Stem, inverted residual blocks, last 1x1 conv, global pool, dropout + Linear.

    ``small_input`` runs the stem and the first stride-2 block at stride 1.
    """

    def __init__(self, setting: Setting, *, num_classes: int, in_channels: int,
                 width_mult: float = 1.0, round_nearest: int = 8, stem_channels: int = 32,
                 last_channel: int = 1280, dropout: float = 0.2, small_input: bool = False):
        super().__init__()
        cin = make_divisible(stem_channels * width_mult, round_nearest)
        last = make_divisible(last_channel * max(1.0, width_mult), round_nearest)
        features: list[nn.Module] = [conv_bn_relu6(in_channels, cin, 3, 1 if small_input else 2)]
        reduce_next = small_input
        for t, c, n, s in setting:
            cout = make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                stride = s if i == 0 else 1
                if stride == 2 and reduce_next:
                    stride, reduce_next = 1, False
                features.append(InvertedResidual(cin, cout, stride, t))
                cin = cout
        features.append(conv_bn_relu6(cin, last, 1))
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last, num_classes))
        init_conv_bn(self)
        init_linear_normal(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def total_stride(setting: Setting, small_input: bool) -> int:
    """The product of all strides: how much the network shrinks its input."""
    strides = [2] + [s for _, _, _, s in setting if s > 1]
    return math.prod(strides[2:] if small_input else strides)


def build_mobilenet_v2(setting: Setting, *, input_size: Size2d, stem: str,
                       width_mult: float, **kw) -> MobileNetV2:
    """Check the arguments, resolve ``stem="auto"`` and build."""
    width_mult = positive_float("width_mult", width_mult)
    stem = choice("stem", stem, ("auto", "imagenet", "cifar"))
    small = min(input_size) < SMALL_INPUT if stem == "auto" else stem == "cifar"
    require_input(input_size, total_stride(setting, small), "" if small else "stem='cifar'")
    return MobileNetV2(setting, width_mult=width_mult, small_input=small, **kw)


@register_model(family="mobilenet", default_input=(3, 224, 224), default_classes=1000)
def mobilenet_v2(*, num_classes: int, in_channels: int, input_size: Size2d,
                 width_mult: float = 1.0, stem: str = "auto") -> MobileNetV2:
    """MobileNetV2 with ReLU6 and width_mult, torchvision keys."""
    return build_mobilenet_v2(STANDARD, num_classes=num_classes, in_channels=in_channels,
                              input_size=input_size, stem=stem, width_mult=width_mult)


@register_model(family="mobilenet", test=True)
def test_mobilenet_v2(*, num_classes: int, in_channels: int, input_size: Size2d,
                      width_mult: float = 0.25, stem: str = "auto") -> MobileNetV2:
    """Tiny MobileNetV2: 5 blocks (channels 4/8/8, rounded to 4) with two residual
    adds and a stride-2 depthwise conv even on small inputs, last conv 32 wide."""
    setting = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 2, 2))
    return build_mobilenet_v2(setting, num_classes=num_classes, in_channels=in_channels,
                              input_size=input_size, stem=stem, width_mult=width_mult,
                              round_nearest=4, last_channel=32)
