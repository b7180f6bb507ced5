"""Weight-only channel importance computed from the ONNX graph (no data needed).

``l1``/``l2``: the sum over a group's weight slices (producer and consumer weights and
biases, BatchNorm scales, per-channel constants; not running statistics) of each
channel's L1 / L2 norm, as in DepGraph's group norm. ``random``: seeded uniform.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from .analysis import Analysis, ChannelGroup, Member

WEIGHT_ONLY = ("l1", "l2", "random")
_SKIP_KINDS = {"bn_mean", "bn_var"}


def member_slices(arr: np.ndarray, m: Member, width: int) -> np.ndarray:
    """(width, -1) array of the member's channels."""
    moved = np.moveaxis(arr, m.axis, 0)
    part = moved[m.offset:m.offset + width * m.block]
    return part.reshape(width, -1)


def channel_norms(arr: np.ndarray, m: Member, width: int, p: int) -> np.ndarray:
    """Per-channel L1 (p=1) or squared L2 (p=2) mass of a member, reduced without copying
    the tensor (a 400 MB fully connected weight costs one pass)."""
    other = tuple(i for i in range(arr.ndim) if i != m.axis)
    per_index = np.abs(arr).sum(axis=other, dtype=np.float64) if p == 1 else \
        np.square(arr, dtype=np.float32).sum(axis=other, dtype=np.float64)
    return per_index[m.offset:m.offset + width * m.block].reshape(width, m.block).sum(axis=1)


def weight_scores(analysis: Analysis, group: ChannelGroup, criterion: str, *,
                  rng: np.random.Generator | None = None) -> np.ndarray:
    if criterion not in WEIGHT_ONLY:
        raise InputError(f"importance {criterion!r} needs data and a PyTorch model",
                         hint=f"on an ONNX file use one of: {', '.join(WEIGHT_ONLY)}")
    if criterion == "random":
        return (rng or np.random.default_rng(0)).random(group.width)
    scores = np.zeros(group.width)
    for m in group.members:
        if m.kind in _SKIP_KINDS:
            continue
        mass = channel_norms(analysis.view.const(m.tensor), m, group.width, 1 if criterion == "l1" else 2)
        scores += mass if criterion == "l1" else np.sqrt(mass)
    return scores
