"""Static removal: channels that rarely fire are removed for real, through the groups.

A gated conv's channel *fires* on an input when the winner-take-all keeps it. Over a
calibration set, each gated conv gets a firing rate per output channel. A channel group
can span several producers (a residual stage: the stem or projection conv and every
block's last conv write the same channels); removing group channel c removes it from all
of them, so the **group's firing rate is the largest rate of its producers**, and a
group with any producer that is not a gated conv (e.g. the classifier) is never
removed. Channels below ``threshold`` go, lowest rate first, while the group keeps its
floor (``--max-ratio``) and a ``--round-to`` multiple.

Before removal the gates are folded back into the plain conv + BN of the original model
(:func:`fold_into`): gamma := E[m * g], beta := E[m] * beta, the mean-field model of the
gated layer, so that the static model starts near the gated one; build then fine-tunes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch
from torch import Tensor, nn

from ..torch_groups import TorchPruner, evaluation
from .wrap import GatedModel


@dataclass
class FiringStats:
    """Per gated conv: how often each channel fired, and the sum of m * g, over ``inputs``."""

    fired: dict[str, np.ndarray]
    gain: dict[str, np.ndarray]
    inputs: int

    def rate(self, name: str) -> np.ndarray:
        return self.fired[name] / max(self.inputs, 1)

    def mean_gain(self, name: str) -> np.ndarray:
        return self.gain[name] / max(self.inputs, 1)

    def summary(self, threshold: float) -> dict[str, float]:
        """How input-dependent the gates are, over all gated channels: the shares that
        never fire, fire on fewer than ``threshold`` of the inputs, always fire, or vary."""
        rates = np.concatenate([self.rate(n) for n in self.fired]) if self.fired else np.zeros(0)
        n = max(len(rates), 1)
        return {"never": float(np.sum(rates == 0) / n), "below_threshold": float(np.sum(rates < threshold) / n),
                "always": float(np.sum(rates == 1) / n), "sometimes": float(np.sum((rates > 0) & (rates < 1)) / n)}


@torch.no_grad()
def firing_stats(gated: GatedModel, batches: Iterable[tuple[Tensor, Tensor]]) -> FiringStats:
    """Run ``batches`` in eval mode and count, per channel, the inputs it fired on."""
    gates = gated.gates
    fired = {n: np.zeros(g.channels) for n, g in gates.items()}
    gain = {n: np.zeros(g.channels) for n, g in gates.items()}
    seen = 0
    with evaluation(gated.model):
        for inputs, _ in batches:
            gated.model(inputs)
            seen += len(inputs)
            for name, gate in gates.items():
                fired[name] += gate.mask.sum(dim=0).double().numpy()
                gain[name] += gate.saliency.sum(dim=0).double().numpy()
    return FiringStats(fired, gain, seen)


@torch.no_grad()
def fold_into(model: nn.Module, gated: GatedModel, stats: FiringStats) -> None:
    """Write the trained gated layers back into ``model``'s conv + BN (same names)."""
    for name, gate in gated.gates.items():
        conv, bn = model.get_submodule(name), model.get_submodule(gated.bn_of[name])
        conv.weight.copy_(gate.conv.weight)
        if conv.bias is not None:
            conv.bias.copy_(gate.conv.bias)
        bn.running_mean.copy_(gate.norm.running_mean)
        bn.running_var.copy_(gate.norm.running_var)
        bn.weight.copy_(torch.as_tensor(stats.mean_gain(name), dtype=bn.weight.dtype))
        bn.bias.copy_(torch.as_tensor(stats.rate(name), dtype=bn.bias.dtype) * gate.beta)
    _copy_rest(model, gated)


def _copy_rest(model: nn.Module, gated: GatedModel) -> None:
    """Every parameter and buffer outside the gated pairs, trained along in the joint phase."""
    ours = model.state_dict()
    skip = tuple(f"{n}." for pair in gated.bn_of.items() for n in pair)
    for key, value in gated.model.state_dict().items():
        if key in ours and not key.startswith(skip) and ours[key].shape == value.shape:
            ours[key].copy_(value)


def group_rates(pruner: TorchPruner, gated: GatedModel, stats: FiringStats) -> tuple[dict[int, np.ndarray], dict[int, str]]:
    """Firing rate per channel of every prunable group whose producers are all gated convs
    (the largest rate over those producers), and why each other prunable group is not."""
    rates: dict[int, np.ndarray] = {}
    why: dict[int, str] = {}
    gates = gated.gates
    for group in pruner.prunable:
        producers = [m for m in group.by_role("producer")]
        rate = np.zeros(group.width)
        for m in producers:
            owner, _, attr = m.tensor.rpartition(".")
            if owner not in gates or attr not in ("weight", "bias") or m.axis != 0:
                why[group.id] = f"{m.tensor} is not a gated convolution's output"
                break
            per_channel = stats.rate(owner)[m.indices(range(group.width))].reshape(group.width, -1)
            rate = np.maximum(rate, per_channel.max(axis=1))
        else:
            if producers:
                rates[group.id] = rate
    return rates, why


def static_drop(rates: dict[int, np.ndarray], widths: np.ndarray, floors: np.ndarray, *, threshold: float,
                round_to: int) -> dict[int, np.ndarray]:
    """Per group: the channels firing on fewer than ``threshold`` of the inputs, rarest
    first, as many as the floor allows, kept widths rounded up to a ``round_to`` multiple."""
    drop = {}
    for gid, rate in rates.items():
        width = int(widths[gid])
        rare = np.flatnonzero(rate < threshold)
        rare = rare[np.argsort(rate[rare], kind="stable")]
        keep = max(width - len(rare), int(floors[gid]))
        if round_to > 1 and width > round_to:
            keep = min(width, math.ceil(keep / round_to) * round_to)
        if keep < width:
            drop[gid] = np.sort(rare[:width - keep])
    return drop
