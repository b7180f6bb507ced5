"""One FBS convolution: a conv + BatchNorm pair with its saliency branch.

    g(x)  = relu(FC(mean_hw |x|))                 saliency per output channel
    m     = wta_k(g), k = ceil(d * C)             0/1, exactly k per sample
    y     = m * g * BN_noaffine(conv(x)) + m * beta

(METHODS.md's reading of Gao et al. 2019; the activation after it stays where the model
had it, so a suppressed channel is exactly 0 after a ReLU.)

**How BN's affine parameters fold in.** The gate replaces gamma: BN keeps its running
statistics but no scale (``affine=False``), and beta becomes ``self.beta``, switched off
with the channel. The gate starts equal to the trained model: FC
bias |gamma| and FC weight 0 (or small noise, ``init_scale``, so that the choice depends on
the input from the start: only kept channels get gradients through the mask); a negative
gamma's sign moves into the conv (its output channel, bias and running mean negated), so
at density 1 and ``init_scale`` 0 the gated model computes what the dense model computed.
:func:`deploypipe.prune.fbs.static.fold_into` goes back: gamma := E[m * g],
beta := E[m] * beta over a calibration set.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .wta import keep_count, wta_mask


class FBSConv(nn.Module):
    """``conv`` followed by ``bn``, gated per sample (see the module docstring)."""

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d, *, init_scale: float = 0.0):
        super().__init__()
        self.conv = conv
        self.norm = nn.BatchNorm2d(bn.num_features, eps=bn.eps, momentum=bn.momentum, affine=False)
        self.beta = nn.Parameter(bn.bias.detach().clone())
        self.gate = nn.Linear(conv.in_channels, conv.out_channels)
        self.density = 1.0
        self.mask: Tensor | None = None  # last forward's 0/1 mask (N, C), detached
        self.saliency: Tensor | None = None  # last forward's m * g (N, C), with its graph
        self._absorb(bn, init_scale)

    @property
    def channels(self) -> int:
        return self.conv.out_channels

    @property
    def k(self) -> int:
        return keep_count(self.density, self.channels)

    @torch.no_grad()
    def _absorb(self, bn: nn.BatchNorm2d, init_scale: float) -> None:
        """Start equal to conv + bn: gate = |gamma|, sign(gamma) moved into the conv; with
        ``init_scale`` > 0 the FC weights start at N(0, (init_scale * mean|gamma|)^2 / C_in)
        instead of 0, so the gates depend on the input from the first step."""
        gamma = bn.weight.detach()
        sign = torch.where(gamma < 0, -1.0, 1.0).to(gamma.dtype)
        self.conv.weight.mul_(sign.view(-1, *[1] * (self.conv.weight.dim() - 1)))
        if self.conv.bias is not None:
            self.conv.bias.mul_(sign)
        self.norm.running_mean.copy_(bn.running_mean * sign)
        self.norm.running_var.copy_(bn.running_var)
        self.norm.num_batches_tracked.copy_(bn.num_batches_tracked)
        std = init_scale * float(gamma.abs().mean()) / max(1, self.conv.in_channels) ** 0.5
        if std > 0:
            self.gate.weight.normal_(0.0, std)
        else:
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
