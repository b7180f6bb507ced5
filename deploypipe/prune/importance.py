"""Channel importance criteria: ``criterion.scores(pruner, ctx) -> {group id: per-channel}``.

Weight-only criteria read the current PyTorch tensors of each group's members; data
criteria run calibration batches through the model with unit masks at the consumers
(:class:`ConsumerMasks`), so ``dL/dm_c`` is exactly the first-order change of the loss
when channel ``c`` is removed:

==========  ===================================================================
l1, l2      sum over the group's weight slices of each channel's L1 / L2 norm
bn_scale    |gamma_c| summed over the group's BatchNorms (Network Slimming);
            groups without BatchNorm fall back to l1
taylor      sum over samples of |dL_n/dm_c|  (Molchanov et al. 2017, per image)
fisher      sum over samples of (dL_n/dm_c)^2  (Liu et al. 2021, Group Fisher)
random      seeded uniform, the sanity baseline
==========  ===================================================================

Adding a criterion is one class with ``@IMPORTANCE.register("name")``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from .._registry import Registry
from ..errors import InputError
from ..graph.scores import channel_norms
from .torch_groups import ConsumerMasks, TorchPruner

IMPORTANCE: Registry["Importance"] = Registry("importance criterion")
_SKIP_KINDS = {"bn_mean", "bn_var"}


@dataclass
class ImportanceContext:
    """What data criteria need: calibration batches and the loss to differentiate."""

    batches: Iterable[tuple[torch.Tensor, torch.Tensor]] = ()
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = field(
        default_factory=lambda: nn.CrossEntropyLoss(reduction="sum"))
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))


class Importance:
    name = ""
    needs_data = False
    description = ""
    # the scores estimate the loss change of removing a channel, so they compare across groups
    # as they are (what the per-cost allocation divides by the cost a removal saves)
    estimates_loss = False

    def scores(self, pruner: TorchPruner, ctx: ImportanceContext) -> dict[int, np.ndarray]:
        raise NotImplementedError


def create_importance(name: str) -> Importance:
    return IMPORTANCE.get(name)()


def check_allocation(allocation: str, importance: str) -> None:
    """Refuse the per-cost allocation with a criterion whose scores do not compare across groups."""
    if allocation == "per-cost" and not IMPORTANCE.get(importance).estimates_loss:
        raise InputError(f"the per-cost allocation ranks channels by loss per MAC saved, across groups, and "
                         f"importance {importance!r} scores weights, which do not compare across layers",
                         hint="use --importance taylor or fisher with it, or --allocation global")


def _tensors(pruner: TorchPruner) -> dict[str, np.ndarray]:
    named = {**dict(pruner.model.named_parameters()), **dict(pruner.model.named_buffers())}
    return {k: v.detach().cpu().float().numpy() for k, v in named.items()}


class _Norm(Importance):
    p = 1

    def scores(self, pruner, ctx):
        tensors = _tensors(pruner)
        out = {}
        for g in pruner.prunable:
            s = np.zeros(g.width)
            for m in g.members:
                if m.kind not in _SKIP_KINDS:
                    mass = channel_norms(tensors[m.tensor], m, g.width, self.p)
                    s += mass if self.p == 1 else np.sqrt(mass)
            out[g.id] = s
        return out


@IMPORTANCE.register("l1")
class L1(_Norm):
    p = 1
    description = "sum of the L1 norms of each channel's weight slices in the group"


@IMPORTANCE.register("l2")
class L2(_Norm):
    p = 2
    description = "sum of the L2 norms of each channel's weight slices in the group"


@IMPORTANCE.register("bn_scale")
class BNScale(Importance):
    description = "|BatchNorm gamma| of the group's channels (Network Slimming); l1 without BatchNorm"

    def scores(self, pruner, ctx):
        tensors = _tensors(pruner)
        fallback = L1().scores(pruner, ctx)
        out = {}
        for g in pruner.prunable:
            bns = [m for m in g.members if m.kind == "bn_scale"]
            out[g.id] = (sum(channel_norms(tensors[m.tensor], m, g.width, 1) for m in bns)
                         if bns else fallback[g.id])
        return out


@IMPORTANCE.register("random")
class Random(Importance):
    description = "seeded uniform random scores (sanity baseline)"

    def scores(self, pruner, ctx):
        return {g.id: ctx.rng.random(g.width) for g in pruner.prunable}


def mask_gradients(pruner: TorchPruner, ctx: ImportanceContext) -> tuple[dict[int, np.ndarray], ...]:
    """Per group: sum_n dL_n/dm, sum_n (dL_n/dm)^2 and sum_n |dL_n/dm| over the calibration batches."""
    model = pruner.model
    first = {g.id: np.zeros(g.width) for g in pruner.prunable}
    second = {g.id: np.zeros(g.width) for g in pruner.prunable}
    absolute = {g.id: np.zeros(g.width) for g in pruner.prunable}
    was_training = model.training
    model.eval()  # BatchNorm statistics stay put; gradients still flow
    device = next(model.parameters()).device
    try:
        with ConsumerMasks(pruner, per_sample=True) as masks:
            for x, y in ctx.batches:
                x, y = x.to(device), y.to(device)
                masks.begin(x.shape[0])
                model.zero_grad(set_to_none=True)
                ctx.loss(model(x), y).backward()
                for gid, grad in masks.grads().items():
                    g = grad.detach().double().cpu().numpy()
                    first[gid] += g.sum(axis=0)
                    second[gid] += (g ** 2).sum(axis=0)
                    absolute[gid] += np.abs(g).sum(axis=0)
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return first, second, absolute


class _MaskGradient(Importance):
    """A score of :func:`mask_gradients`: ``sum_n |dL_n/dm|`` (``moment`` 1) or ``second`` (2)."""

    needs_data = True
    estimates_loss = True
    moment = 1

    def scores(self, pruner, ctx):
        _, second, absolute = mask_gradients(pruner, ctx)
        return absolute if self.moment == 1 else second


@IMPORTANCE.register("taylor")
class Taylor(_MaskGradient):
    """Each image's first-order loss change of removing the channel, in absolute value, summed
    over the images. Not the absolute value of the summed change: near a trained model's
    minimum the per-image changes cancel, and that sum is mostly noise (on a CIFAR-10
    resnet20 pruned to 2x fewer MACs, globally, before fine-tuning: 42.0% accuracy with it,
    62.6% with this form, 63.7% with fisher)."""

    description = "sum over samples of |dL_n/dm_c|: first-order loss change of removing the channel, per image"


@IMPORTANCE.register("fisher")
class Fisher(_MaskGradient):
    description = "sum over samples of (dL_n/dm_c)^2 (Group Fisher's score, unnormalised)"
    moment = 2
