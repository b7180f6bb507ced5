"""One FBS convolution: a conv + BatchNorm pair with its saliency branch.

    g(x)  = relu(FC(mean_hw |x|))                 saliency per output channel
    m     = wta_k(g), k = ceil(d * C)             0/1, exactly k per sample
    y     = m * g * BN_noaffine(conv(x)) + m * beta

(METHODS.md's reading of Gao et al. 2019; the activation after it stays where the model
had it, so a suppressed channel is exactly 0 after a ReLU.)

**How BN's affine parameters fold in.** The gate replaces gamma: BN keeps its running
statistics but no scale (``affine=False``), and beta becomes ``self.beta``, switched off
with the channel. The gate starts input-independent and equal to the trained model:
FC weight 0, FC bias |gamma|; a negative gamma's sign moves into the conv (its output
channel, bias and running mean negated), so at density 1 the gated model computes what
the dense model computed. :func:`deploypipe.prune.fbs.static.fold_into` goes back:
gamma := E[m * g], beta := E[m] * beta over a calibration set.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .wta import keep_count, wta_mask


class FBSConv(nn.Module):
    """``conv`` followed by ``bn``, gated per sample (see the module docstring)."""

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d):
        super().__init__()
        self.conv = conv
        self.norm = nn.BatchNorm2d(bn.num_features, eps=bn.eps, momentum=bn.momentum, affine=False)
        self.beta = nn.Parameter(bn.bias.detach().clone())
        self.gate = nn.Linear(conv.in_channels, conv.out_channels)
        self.density = 1.0
        self.mask: Tensor | None = None  # last forward's 0/1 mask (N, C), detached
        self.saliency: Tensor | None = None  # last forward's m * g (N, C), with its graph
        self._absorb(bn)

    @property
    def channels(self) -> int:
        return self.conv.out_channels

    @property
    def k(self) -> int:
        return keep_count(self.density, self.channels)

    @torch.no_grad()
    def _absorb(self, bn: nn.BatchNorm2d) -> None:
        """Start equal to conv + bn: gate = |gamma|, sign(gamma) moved into the conv."""
        gamma = bn.weight.detach()
        sign = torch.where(gamma < 0, -1.0, 1.0).to(gamma.dtype)
        self.conv.weight.mul_(sign.view(-1, *[1] * (self.conv.weight.dim() - 1)))
        if self.conv.bias is not None:
            self.conv.bias.mul_(sign)
        self.norm.running_mean.copy_(bn.running_mean * sign)
        self.norm.running_var.copy_(bn.running_var)
        self.norm.num_batches_tracked.copy_(bn.num_batches_tracked)
        self.gate.weight.zero_()
        self.gate.bias.copy_(gamma.abs())

    def saliencies(self, x: Tensor) -> Tensor:
        """g(x): relu(FC(global average of |x|)), shape (N, C)."""
        return F.relu(self.gate(x.abs().mean(dim=(2, 3))))

    def forward(self, x: Tensor) -> Tensor:
        g = self.saliencies(x)
        m = wta_mask(g, self.k)
        self.mask, self.saliency = m, m * g
        z = self.norm(self.conv(x))
        return m[:, :, None, None] * (g[:, :, None, None] * z + self.beta.view(1, -1, 1, 1))
