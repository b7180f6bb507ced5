"""Label-preserving augmentation of image batches, on whatever device the batch is on.

``crop-flip`` is the standard CIFAR recipe (He et al. 2016): pad 4 pixels of zeros on each
side, take a random crop of the original size, and flip half the images left to right. It is
written once, on the batch tensor, so it serves any image dataset, costs no data-loader
workers, and runs on the GPU when training does. It is off by default: flipping is not
label-preserving for every dataset (digits, text).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

AUGMENTATIONS = ("none", "crop-flip")


def augment(x: Tensor, kind: str, generator: torch.Generator) -> Tensor:
    """``x`` (N,C,H,W) augmented by ``kind``, with randomness from ``generator`` (on the CPU,
    so that a run is reproducible whatever the device)."""
    if kind == "none":
        return x
    if kind == "crop-flip":
        return random_flip(random_crop(x, 4, generator), generator)
    raise ValueError(f"unknown augmentation {kind!r}")


def random_crop(x: Tensor, pad: int, generator: torch.Generator) -> Tensor:
    """Each image shifted by up to ``pad`` pixels in each direction, zeros shifted in."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy, dx = (torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
              for _ in range(2))
    rows = (torch.arange(h, device=x.device)[None, :] + dy[:, None])  # (N, H)
    cols = (torch.arange(w, device=x.device)[None, :] + dx[:, None])  # (N, W)
    index = torch.arange(n, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]]  # (N,H,W,C)
    return out.permute(0, 3, 1, 2).contiguous()


def random_flip(x: Tensor, generator: torch.Generator) -> Tensor:
    """Half the images (by a coin each) mirrored left to right."""
    flip = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(3), x)
