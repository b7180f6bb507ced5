"""crop-flip: each image is its own padded crop, possibly mirrored; reproducible by seed."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from deploypipe.train.augment import augment, random_crop, random_flip


def test_every_crop_is_a_window_of_the_zero_padded_image():
    x = torch.arange(2 * 3 * 5 * 6, dtype=torch.float32).reshape(2, 3, 5, 6) + 1
    out = random_crop(x, 2, torch.Generator().manual_seed(0))
    padded = F.pad(x, (2, 2, 2, 2))
    assert out.shape == x.shape
    for i in range(2):
        windows = [(dy, dx) for dy in range(5) for dx in range(5)
                   if torch.equal(padded[i, :, dy:dy + 5, dx:dx + 6], out[i])]
        assert len(windows) == 1


def test_flip_mirrors_some_images_and_keeps_the_rest():
    x = torch.randn(64, 3, 4, 4)
    out = random_flip(x, torch.Generator().manual_seed(1))
    mirrored = [torch.equal(out[i], x[i].flip(2)) for i in range(64)]
    kept = [torch.equal(out[i], x[i]) for i in range(64)]
    assert all(m or k for m, k in zip(mirrored, kept)) and 15 < sum(mirrored) < 49


def test_reproducible_and_off_by_default():
    x = torch.randn(8, 3, 32, 32)
    a = augment(x, "crop-flip", torch.Generator().manual_seed(3))
    b = augment(x, "crop-flip", torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and not torch.equal(a, x)
    assert augment(x, "none", torch.Generator()) is x
    with pytest.raises(ValueError, match="unknown augmentation"):
        augment(x, "cutout", torch.Generator())
