"""Dynamic MACs: what one input really costs when suppressed channels are skipped.

Per sample and convolution (the paper's count, both sides of each convolution):

    MACs = out_active * in_active / groups * kh * kw * H_out * W_out

``out_active`` counts the channels the conv must compute: kept by the winner-take-all
*and* with a positive saliency (a kept channel with g = 0 outputs the constant beta, no
convolution needed). ``in_active`` counts the input channels that are not known to be 0:
for a conv fed through ReLU/pooling by a gated conv, the channels that conv kept; all of
them otherwise (the image, a residual sum). A grouped conv gets the output-side saving
only. Everything that is not a Conv2d (the classifier) costs what it costs in the dense
model's ONNX cost model, and each gate adds its FC (C_in * C_out MACs).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch
from torch import Tensor

from ..torch_groups import evaluation
from .wrap import ConvSite, GatedModel


@dataclass(frozen=True)
class DynamicMacs:
    """Per-input MACs of the gated model over a dataset, against the dense model."""

    per_input: np.ndarray  # one total per input, gates included
    dense: float
    gates: float  # the saliency branches' FC MACs (included in per_input)

    @property
    def mean(self) -> float:
        return float(self.per_input.mean())

    def to_dict(self) -> dict[str, float | int]:
        p = self.per_input
        return {"mean": self.mean, "min": float(p.min()), "max": float(p.max()), "std": float(p.std()),
                "inputs": int(len(p)), "dense": self.dense, "gate_overhead": self.gates,
                "reduction": self.dense / self.mean}


def dense_conv_macs(site: ConvSite) -> float:
    """MACs of one sample through ``site`` with no channel skipped."""
    return float(site.conv.out_channels) * _per_out_channel(site)


def gate_macs(gated: GatedModel) -> float:
    return float(sum(g.gate.in_features * g.gate.out_features for g in gated.gates.values()))


def sample_macs(gated: GatedModel, other_macs: float) -> Tensor:
    """Per-sample MACs of the gated model's last forward (float64, shape (N,));
    ``other_macs`` is what the layers that are not convolutions cost."""
    masks = {name: gate.mask for name, gate in gated.gates.items()}
    total: Tensor | None = None
    for site in gated.sites:
        out_active = _out_active(site)
        in_active = _in_active(site, masks)
        macs = out_active * in_active * _per_channel_pair(site)
        total = macs if total is None else total + macs
    assert total is not None, "a gated model without convolutions"
    return total + other_macs + gate_macs(gated)


@torch.no_grad()
def count_dynamic_macs(gated: GatedModel, batches: Iterable[tuple[Tensor, Tensor]],
                       dense_macs: float) -> DynamicMacs:
    """Run ``batches`` through the gated model in eval mode and count each input's MACs;
    ``dense_macs`` is the dense model's total from the ONNX cost model."""
    other = dense_macs - sum(dense_conv_macs(s) for s in gated.sites)
    parts = []
    with evaluation(gated.model):
        for inputs, _ in batches:
            gated.model(inputs)
            parts.append(sample_macs(gated, other).cpu().numpy())
    return DynamicMacs(np.concatenate(parts), float(dense_macs), gate_macs(gated))


def _per_out_channel(site: ConvSite) -> float:
    c = site.conv
    kh, kw = c.kernel_size
    return float(c.in_channels // c.groups * kh * kw * site.out_pixels)


def _per_channel_pair(site: ConvSite) -> float:
    """MACs per (output channel, counted input channel) pair."""
    if site.conv.groups == 1:
        return _per_out_channel(site) / site.conv.in_channels
    return _per_out_channel(site)  # grouped: the input side is not counted (in_active is 1)


def _out_active(site: ConvSite) -> Tensor | float:
    if site.gate is None:
        return float(site.conv.out_channels)
    assert site.gate.mask is not None and site.gate.saliency is not None
    return ((site.gate.mask > 0) & (site.gate.saliency > 0)).sum(dim=1).double()


def _in_active(site: ConvSite, masks: dict[str, Tensor | None]) -> Tensor | float:
    if site.conv.groups != 1:
        return 1.0
    feed = masks.get(site.feed) if site.feed else None
    return float(site.conv.in_channels) if feed is None else feed.sum(dim=1).double()
