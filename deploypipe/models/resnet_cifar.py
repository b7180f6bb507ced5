"""CIFAR ResNets (He et al. 2016, sec. 4.2): resnet20/32/56/110.

Three stages of n BasicBlocks (6n + 2 layers) at widths 16/32/64, a 3x3 stride-1 stem,
global average pooling and ``fc``. Shortcuts that change shape are option B (1x1 conv +
BN, named ``layerK.0.downsample.0/1`` as torchvision), not option A's zero padding, so
every channel is a real conv channel that pruning can reason about. This makes each
model 2,752 parameters larger than the paper's option-A count.
"""
from __future__ import annotations

from ._layers import Size2d
from ._registry import register_model
from .resnet import BasicBlock, ResNet, build_resnet


def _cifar(n: int, widths: tuple[int, int, int], num_classes: int, in_channels: int,
           input_size: Size2d) -> ResNet:
    return build_resnet(BasicBlock, [n, n, n], widths, num_classes=num_classes,
                        in_channels=in_channels, input_size=input_size,
                        stem_width=widths[0], stem="cifar")


@register_model(family="resnet_cifar")
def resnet20(*, num_classes: int, in_channels: int, input_size: Size2d) -> ResNet:
    """CIFAR ResNet-20: 3 stages of 3 BasicBlocks, widths 16/32/64."""
    return _cifar(3, (16, 32, 64), num_classes, in_channels, input_size)


@register_model(family="resnet_cifar")
def resnet32(*, num_classes: int, in_channels: int, input_size: Size2d) -> ResNet:
    """CIFAR ResNet-32: 3 stages of 5 BasicBlocks, widths 16/32/64."""
    return _cifar(5, (16, 32, 64), num_classes, in_channels, input_size)


@register_model(family="resnet_cifar")
def resnet56(*, num_classes: int, in_channels: int, input_size: Size2d) -> ResNet:
    """CIFAR ResNet-56: 3 stages of 9 BasicBlocks, widths 16/32/64."""
    return _cifar(9, (16, 32, 64), num_classes, in_channels, input_size)


@register_model(family="resnet_cifar")
def resnet110(*, num_classes: int, in_channels: int, input_size: Size2d) -> ResNet:
    """CIFAR ResNet-110: 3 stages of 18 BasicBlocks, widths 16/32/64."""
    return _cifar(18, (16, 32, 64), num_classes, in_channels, input_size)


@register_model(family="resnet_cifar", test=True)
def test_resnet_cifar(*, num_classes: int, in_channels: int, input_size: Size2d) -> ResNet:
    """Tiny CIFAR ResNet: 1 BasicBlock per stage, widths 4/8/16."""
    return _cifar(1, (4, 8, 16), num_classes, in_channels, input_size)

