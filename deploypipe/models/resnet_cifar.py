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


def _variant(name: str, n: int, widths: tuple[int, int, int], doc: str, *, test: bool = False):
    """Register the CIFAR ResNet ``name``: 3 stages of ``n`` BasicBlocks at ``widths``."""

    def factory(*, num_classes: int, in_channels: int, input_size: Size2d) -> ResNet:
        return _cifar(n, widths, num_classes, in_channels, input_size)

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = doc
    return register_model(family="resnet_cifar", test=test)(factory)


def _paper(n: int):
    """The paper's ResNet-(6n + 2) at widths 16/32/64."""
    return _variant(f"resnet{6 * n + 2}", n, (16, 32, 64),
                    f"CIFAR ResNet-{6 * n + 2}: 3 stages of {n} BasicBlocks, widths 16/32/64.")


resnet20, resnet32, resnet56, resnet110 = (_paper(n) for n in (3, 5, 9, 18))
test_resnet_cifar = _variant("test_resnet_cifar", 1, (4, 8, 16),
                             "Tiny CIFAR ResNet: 1 BasicBlock per stage, widths 4/8/16.", test=True)
