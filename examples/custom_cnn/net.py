"""A small CNN of the user's own (not in deploypipe's zoo): a stem, two residual blocks and a
strided block, global pooling and a classifier. deploypipe prunes it from its state_dict
once told how to build it: ``--arch examples/custom_cnn/net.py:build``."""
from __future__ import annotations

import torch
from torch import nn


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Residual(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.body = nn.Sequential(conv_bn(width, width), nn.Conv2d(width, width, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.body(x))


class DigitNet(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 32):
        super().__init__()
        self.features = nn.Sequential(conv_bn(in_channels, width), Residual(width), Residual(width),
                                      conv_bn(width, 2 * width, stride=2), conv_bn(2 * width, 2 * width))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """The factory ``--arch`` names: deploypipe passes the sizes it reads off the weights."""
    return DigitNet(num_classes, in_channels)
