"""ResNet-18/34/50 (He et al. 2016) with torchvision-compatible state_dict keys.

Keys, shapes and parameter counts match ``torchvision.models.resnet*`` (v1.5: the stride
of a Bottleneck sits on its 3x3 conv), so torchvision checkpoints load with
``strict=True``. Inputs smaller than 64 pixels get the ``"cifar"`` stem automatically: a
3x3 stride-1 ``conv1`` and no max-pool, which keeps every key and only changes the shape
of ``conv1.weight``. Each activation is its own ``nn.ReLU`` module (not one shared, not
in-place) so forward hooks see every call exactly once.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ._layers import Size2d, choice, init_conv_bn, require_input
from ._registry import register_model

SMALL_INPUT = 64  # below this many pixels a side, "auto" picks the cifar stem


def projection(cin: int, cout: int, stride: int) -> nn.Sequential | None:
    """The 1x1 conv + BN shortcut (option B) where the shape changes, else None."""
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    """Two 3x3 convs and a residual add (ResNet-18/34 and the CIFAR ResNets)."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = projection(cin, planes, stride)
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride, as torchvision v1.5), 1x1 expand x4."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1):
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.downsample = projection(cin, cout, stride)
        self.relu3 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu3(out + identity)


Block = type[BasicBlock] | type[Bottleneck]


class ResNet(nn.Module):
    """A stem, stages ``layer1..layerN`` (the first at stride 1, the rest at stride 2),
    global average pooling and ``fc``; any number of stages, so it also builds the
    3-stage CIFAR ResNets."""

    def __init__(self, block: Block, layers: Sequence[int], widths: Sequence[int], *,
                 num_classes: int, in_channels: int, stem_width: int, stem: str):
        super().__init__()
        imagenet = stem == "imagenet"
        self.conv1 = (nn.Conv2d(in_channels, stem_width, 7, 2, 3, bias=False) if imagenet
                      else nn.Conv2d(in_channels, stem_width, 3, 1, 1, bias=False))
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1) if imagenet else nn.Identity()
        cin = stem_width
        for i, (planes, blocks) in enumerate(zip(widths, layers)):
            stage = [block(cin, planes, 1 if i == 0 else 2)]
            cin = planes * block.expansion
            stage += [block(cin, planes) for _ in range(blocks - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*stage))
        self.num_stages = len(layers)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(cin, num_classes)
        init_conv_bn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def build_resnet(block: Block, layers: Sequence[int], widths: Sequence[int], *,
                 num_classes: int, in_channels: int, input_size: Size2d,
                 stem_width: int, stem: str) -> ResNet:
    """Resolve ``stem="auto"``, refuse inputs smaller than the total stride, build."""
    stem = choice("stem", stem, ("auto", "imagenet", "cifar"))
    if stem == "auto":
        stem = "cifar" if min(input_size) < SMALL_INPUT else "imagenet"
    total_stride = (4 if stem == "imagenet" else 1) * 2 ** (len(layers) - 1)
    require_input(input_size, total_stride, "stem='cifar'" if stem == "imagenet" else "")
    return ResNet(block, layers, widths, num_classes=num_classes, in_channels=in_channels,
                  stem_width=stem_width, stem=stem)


def _imagenet(block: Block, layers: Sequence[int], num_classes: int, in_channels: int,
              input_size: Size2d, stem: str) -> ResNet:
    return build_resnet(block, layers, (64, 128, 256, 512), num_classes=num_classes,
                        in_channels=in_channels, input_size=input_size, stem_width=64,
                        stem=stem)


_IMAGENET = dict(family="resnet", default_input=(3, 224, 224), default_classes=1000)


@register_model(**_IMAGENET)
def resnet18(*, num_classes: int, in_channels: int, input_size: Size2d,
             stem: str = "auto") -> ResNet:
    """ResNet-18, BasicBlocks [2, 2, 2, 2], torchvision keys."""
    return _imagenet(BasicBlock, [2, 2, 2, 2], num_classes, in_channels, input_size, stem)


@register_model(**_IMAGENET)
def resnet34(*, num_classes: int, in_channels: int, input_size: Size2d,
             stem: str = "auto") -> ResNet:
    """ResNet-34, BasicBlocks [3, 4, 6, 3], torchvision keys."""
    return _imagenet(BasicBlock, [3, 4, 6, 3], num_classes, in_channels, input_size, stem)


@register_model(**_IMAGENET)
def resnet50(*, num_classes: int, in_channels: int, input_size: Size2d,
             stem: str = "auto") -> ResNet:
    """ResNet-50 (v1.5), Bottlenecks [3, 4, 6, 3], torchvision keys."""
    return _imagenet(Bottleneck, [3, 4, 6, 3], num_classes, in_channels, input_size, stem)


@register_model(family="resnet", test=True)
def test_resnet(*, num_classes: int, in_channels: int, input_size: Size2d,
                stem: str = "auto") -> ResNet:
    """Tiny 4-stage BasicBlock ResNet (widths 4/8/8/16): torchvision keys, a stride-only
    projection in layer3."""
    return build_resnet(BasicBlock, [1, 1, 1, 1], (4, 8, 8, 16), num_classes=num_classes,
                        in_channels=in_channels, input_size=input_size, stem_width=4,
                        stem=stem)


@register_model(family="resnet", test=True)
def test_resnet_bottleneck(*, num_classes: int, in_channels: int, input_size: Size2d,
                           stem: str = "auto") -> ResNet:
    """Tiny 4-stage Bottleneck ResNet (planes 2/4/4/8, x4 expansion), torchvision keys."""
    return build_resnet(Bottleneck, [1, 1, 1, 1], (2, 4, 4, 8), num_classes=num_classes,
                        in_channels=in_channels, input_size=input_size, stem_width=4,
                        stem=stem)
