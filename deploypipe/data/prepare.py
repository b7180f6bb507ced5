"""Array preparation shared by every source: layout to NCHW, resizing, channel matching
and per-channel normalisation with statistics from the training split only."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError


def to_nchw(x: np.ndarray, what: str) -> np.ndarray:
    """(N,H,W), (N,C,H,W) or (N,H,W,C) -> (N,C,H,W); the channel axis is the small one."""
    if x.ndim == 3:
        return x[:, None]
    if x.ndim != 4:
        raise InputError(f"{what} has shape {tuple(x.shape)} but images must be (N,H,W), "
                         "(N,C,H,W) or (N,H,W,C)", hint="reshape the array before saving it")
    first, last = x.shape[1], x.shape[3]
    if first <= 4:
        return x
    if last <= 4:
        return np.moveaxis(x, 3, 1)
    raise InputError(f"{what} has shape {tuple(x.shape)} and neither axis 1 nor axis 3 looks "
                     "like a channel axis (at most 4 channels)", hint="save the images as (N,C,H,W)")


def to_unit_float(x: np.ndarray) -> np.ndarray:
    """Float32 images; integer pixels are scaled to [0, 1] (8-bit by dtype or by range)."""
    if np.issubdtype(x.dtype, np.integer) or x.dtype == np.bool_:
        peak = 255.0 if x.dtype == np.uint8 or x.max(initial=0) <= 255 else float(x.max())
        return x.astype(np.float32) / max(peak, 1.0)
    if not np.issubdtype(x.dtype, np.floating):
        raise InputError(f"images of dtype {x.dtype} are not numbers", hint="store them as uint8 or float32")
    return x.astype(np.float32, copy=False)


def resize(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of an (N,C,H,W) batch; anti-aliased when shrinking."""
    if tuple(x.shape[2:]) == tuple(size):
        return x
    shrink = size[0] < x.shape[2] or size[1] < x.shape[3]
    out = F.interpolate(torch.from_numpy(np.ascontiguousarray(x)), size=size, mode="bilinear",
                        align_corners=False, antialias=shrink)
    return out.numpy()


def match_channels(x: np.ndarray, channels: int | None, name: str) -> np.ndarray:
    """Repeat a grey channel to ``channels``; any other change cannot be made faithfully."""
    have = x.shape[1]
    if channels is None or channels == have:
        return x
    if have == 1 and channels > 1:
        return np.repeat(x, channels, axis=1)
    raise InputError(f"dataset {name!r} has {have}-channel images but {channels} input "
                     f"channel(s) were requested", hint=f"use --in-channels {have} so the model "
                     "takes the images as they are")


def channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of (N,C,H,W), computed in float64; std is never zero."""
    mean = x.mean(axis=(0, 2, 3), dtype=np.float64)
    std = x.std(axis=(0, 2, 3), dtype=np.float64)
    return mean, np.where(std > 1e-8, std, 1.0)


def normalise(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    shape = (1, -1, 1, 1)
    return ((x - mean.reshape(shape)) / std.reshape(shape)).astype(np.float32)


def check_labels(y: np.ndarray, n: int, what: str) -> np.ndarray:
    """Labels as int64 class indices 0..K-1, one per image."""
    y = np.asarray(y)
    if y.ndim != 1:
        y = y.reshape(-1) if y.size == n else y
    if y.ndim != 1 or len(y) != n:
        raise InputError(f"{what} has {n} images but labels of shape {tuple(y.shape)}",
                         hint="give exactly one integer label per image")
    if not np.issubdtype(y.dtype, np.integer):
        if not np.issubdtype(y.dtype, np.floating) or not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise InputError(f"{what} has labels of dtype {y.dtype} that are not whole numbers",
                             hint="store class indices 0..K-1 as integers")
    y = y.astype(np.int64)
    if len(y) and y.min() < 0:
        raise InputError(f"{what} has negative labels", hint="store class indices 0..K-1")
    return y
