"""Winner-take-all over channels: the k most salient channels of each sample.

FBS (Gao et al., ICLR 2019) keeps the k = ceil(d * C) largest saliencies of each sample
and suppresses the rest. The mask is computed from pairwise ranks rather than with
``torch.topk`` so that ties have one documented rule in both engines: among equal
saliencies the lower channel index wins, which is also ONNX TopK's rule. This matters
because ReLU saliencies are often exactly 0; with ``topk`` PyTorch and ONNX Runtime
could keep different zero-saliency channels and disagree. The exported graph is a few
comparisons and a ReduceSum (N x C x C elements, tiny next to a convolution).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


def keep_count(density: float, channels: int) -> int:
    """k = ceil(d * C), at least 1 and at most C (the paper's rounding)."""
    return max(1, min(channels, math.ceil(density * channels - 1e-9)))


def wta_mask(saliency: Tensor, k: int) -> Tensor:
    """0/1 mask (N, C) with exactly ``k`` ones per row: the ``k`` largest entries of each
    row of ``saliency``, ties to the lower channel index. No gradient flows through it."""
    channels = saliency.shape[1]  # rank < k holds for every channel when k >= C
    s = saliency.detach()
    idx = torch.arange(channels, device=s.device)
    mine, other = s.unsqueeze(2), s.unsqueeze(1)  # (N, C, 1) against (N, 1, C)
    lower = (idx.view(1, 1, channels) < idx.view(1, channels, 1))
    beaten_by = (other > mine) | ((other == mine) & lower)
    rank = beaten_by.to(s.dtype).sum(dim=2)  # how many channels beat this one
    return (rank < k).to(s.dtype)
