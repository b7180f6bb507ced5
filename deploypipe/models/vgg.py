"""VGG-11/16 with batch norm (Simonyan & Zisserman 2015), torchvision-compatible.

``features.N`` numbers Conv/BN/ReLU/MaxPool exactly as torchvision, and the feature map
always reaches the classifier through ``torch.flatten`` into a Linear, so the exported
graph keeps the Flatten -> Gemm pattern (one block of H*W features per channel).

Two classifier layouts, chosen by ``classifier="auto"``:

* ``"imagenet"`` (auto when the input is 64 pixels a side or more *and* the final feature
  map is a multiple of 7 on both sides, e.g. 224 or 448): torchvision's layout,
  ``avgpool`` = AdaptiveAvgPool2d((7, 7)), then ``classifier.0/3/6`` =
  Linear(512*7*7, 4096), ReLU, Dropout, Linear(4096, 4096), ReLU, Dropout,
  Linear(4096, classes). Where the map is already 7x7 (224x224), ``avgpool`` is an
  ``nn.Identity`` (same numbers, no parameters, no no-op AveragePool in the graph).
  Asked for explicitly on other sizes it still works in PyTorch, but an adaptive pool
  whose output is not a factor of its input (e.g. 2x2 -> 7x7 at 64x64) does not export
  to plain ONNX, which is why "auto" does not pick it there.
* ``"compact"`` (every other input, e.g. CIFAR, MNIST, 64x64): ``classifier.0/2`` =
  Linear(512*h*w, 512), ReLU, Linear(512, classes) directly on the flattened h x w map.

In both layouts a max-pool that would shrink the map below 1x1 is replaced by an
``nn.Identity`` at the same index (so ``features.N`` keys never shift): 32x32 keeps all
five pools, 28x28 four (28 -> 14 -> 7 -> 3 -> 1), 8x8 three; each ends at 1x1.
"""
from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import nn

from ._layers import Size2d, choice, init_conv_bn, init_linear_normal
from ._registry import register_model

SMALL_INPUT = 64
Cfg = Sequence[Union[int, str]]  # conv widths, "M" for a 2x2 max-pool
VGG11 = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")
VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
         512, 512, 512, "M")


def final_map_size(cfg: Cfg, input_size: Size2d) -> Size2d:
    """The feature map's (H, W) after every "M" that does not empty it halves it."""
    h, w = input_size
    for v in cfg:
        if v == "M" and min(h, w) >= 2:
            h, w = h // 2, w // 2
    return h, w


def make_features(cfg: Cfg, in_channels: int,
                  input_size: Size2d) -> tuple[list[nn.Module], int, Size2d]:
    """Conv(3x3, bias)/BN/ReLU per width, MaxPool(2) per "M" (Identity where it would
    empty the map); returns the layers, the last width and the final map size."""
    layers: list[nn.Module] = []
    cin, (h, w) = in_channels, input_size
    for v in cfg:
        if v == "M":
            pool = min(h, w) >= 2
            layers.append(nn.MaxPool2d(2, 2) if pool else nn.Identity())
            h, w = (h // 2, w // 2) if pool else (h, w)
        else:
            layers += [nn.Conv2d(cin, int(v), 3, padding=1), nn.BatchNorm2d(int(v)), nn.ReLU()]
            cin = int(v)
    return layers, cin, (h, w)


def imagenet_head(c: int, hidden: int, num_classes: int, dropout: float) -> nn.Sequential:
    """torchvision's classifier on a 7x7 map: indices 0, 3 and 6 hold the Linears."""
    return nn.Sequential(
        nn.Linear(c * 7 * 7, hidden), nn.ReLU(), nn.Dropout(dropout),
        nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
        nn.Linear(hidden, num_classes))


def compact_head(features: int, hidden: int, num_classes: int) -> nn.Sequential:
    """Flattened map -> hidden -> classes: indices 0 and 2 hold the Linears."""
    return nn.Sequential(nn.Linear(features, hidden), nn.ReLU(),
                         nn.Linear(hidden, num_classes))


class VGG(nn.Module):
    """``features``, ``avgpool`` (AdaptiveAvgPool2d or Identity), flatten, ``classifier``."""

    def __init__(self, cfg: Cfg, *, num_classes: int, in_channels: int, input_size: Size2d,
                 imagenet: bool, hidden: int, dropout: float = 0.5):
        super().__init__()
        layers, c, (h, w) = make_features(cfg, in_channels, input_size)
        self.features = nn.Sequential(*layers)
        if imagenet:
            self.avgpool = nn.Identity() if (h, w) == (7, 7) else nn.AdaptiveAvgPool2d((7, 7))
            self.classifier = imagenet_head(c, hidden, num_classes, dropout)
        else:
            self.avgpool = nn.Identity()
            self.classifier = compact_head(c * h * w, hidden, num_classes)
        init_conv_bn(self)
        init_linear_normal(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def build_vgg(cfg: Cfg, *, num_classes: int, in_channels: int, input_size: Size2d,
              classifier: str, hidden: tuple[int, int]) -> VGG:
    """Resolve ``classifier="auto"``; ``hidden`` is the (imagenet, compact) hidden width."""
    classifier = choice("classifier", classifier, ("auto", "imagenet", "compact"))
    if classifier == "auto":
        h, w = final_map_size(cfg, input_size)
        fits = min(input_size) >= SMALL_INPUT and h % 7 == 0 and w % 7 == 0
        classifier = "imagenet" if fits else "compact"
    imagenet = classifier == "imagenet"
    return VGG(cfg, num_classes=num_classes, in_channels=in_channels, input_size=input_size,
               imagenet=imagenet, hidden=hidden[0] if imagenet else hidden[1])


_IMAGENET = dict(family="vgg", default_input=(3, 224, 224), default_classes=1000)


def _imagenet_vgg(name: str, cfg: Cfg, depth: int):
    """Register VGG-``depth`` (layers ``cfg``) as ``name``: torchvision's at 224x224."""

    def factory(*, num_classes: int, in_channels: int, input_size: Size2d,
                classifier: str = "auto") -> VGG:
        return build_vgg(cfg, num_classes=num_classes, in_channels=in_channels,
                         input_size=input_size, classifier=classifier, hidden=(4096, 512))

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = (f"VGG-{depth} with batch norm, torchvision keys and classifier at 224x224.\n\n"
                       "Elsewhere (e.g. 32x32) the compact classifier of this module's docstring.")
    return register_model(**_IMAGENET)(factory)


vgg11_bn = _imagenet_vgg("vgg11_bn", VGG11, 11)
vgg16_bn = _imagenet_vgg("vgg16_bn", VGG16, 16)


@register_model(family="vgg", test=True)
def test_vgg(*, num_classes: int, in_channels: int, input_size: Size2d,
             classifier: str = "auto") -> VGG:
    """Tiny VGG: 4 conv/BN/ReLU (widths 4/8/16/16) each with a max-pool, flatten into
    two Linears (hidden 16); at 32x32 each channel feeds a block of 2x2 features."""
    return build_vgg((4, "M", 8, "M", 16, "M", 16, "M"), num_classes=num_classes,
                     in_channels=in_channels, input_size=input_size, classifier=classifier,
                     hidden=(16, 16))
