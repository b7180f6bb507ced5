"""Training the gated model: a gate warm-up with the base frozen, then joint training,
with the L1 saliency loss and a density that falls from 1 to the target.

* **Loss**: CE + lambda * sum over gated convs of ||m * g||_1, averaged over the batch
  (the paper's lambda is about 1e-8: a nudge towards sparse saliencies, not a force).
* **Warm-up**: only the saliency branches' FCs train; the base's weights, beta and the
  BN statistics stay as trained (BN in eval mode), so the gates learn to choose before
  the network moves under them.
* **Density schedule**: d falls linearly with the optimizer step from 1 to the target
  over the first ``ramp`` share of all steps (warm-up and joint together), then stays.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from ...train import Callback, TrainConfig, TrainResult, TrainState, fit, make_loader
from .wrap import GatedModel


@dataclass(frozen=True)
class GateSchedule:
    """What :func:`train_gated` does: target density, epochs of each phase, the share of
    steps over which the density falls, and lambda of the L1 saliency loss."""

    density: float
    warmup_epochs: int = 1
    joint_epochs: int = 2
    ramp: float = 0.5
    l1: float = 1e-8


class DensityRamp(Callback):
    """Lowers the gates' density linearly from 1 to ``target`` over ``steps`` steps,
    counting across the fits it is passed to."""

    def __init__(self, gated: GatedModel, target: float, steps: int):
        self.gated, self.target, self.steps, self.done = gated, target, max(1, steps), 0

    def density(self) -> float:
        return 1.0 - (1.0 - self.target) * min(1.0, self.done / self.steps)

    def on_batch_begin(self, state: TrainState) -> None:
        self.gated.set_density(self.density())

    def on_step_end(self, state: TrainState) -> None:
        self.done += 1

    def on_train_end(self, state: TrainState) -> None:
        self.gated.set_density(self.density())


class SaliencyL1(Callback):
    """lambda * mean over the batch of sum_l ||m_l * g_l||_1."""

    def __init__(self, gated: GatedModel, lam: float):
        self.gated, self.lam = gated, lam

    def extra_loss(self, state: TrainState) -> Tensor | None:
        if self.lam <= 0:
            return None
        terms = [g.saliency.sum(dim=1).mean() for g in self.gated.gates.values() if g.saliency is not None]
        return self.lam * torch.stack(terms).sum() if terms else None


class FrozenBase(Callback):
    """Gate warm-up: only the gates' FCs train; every BatchNorm keeps its statistics."""

    def __init__(self, gated: GatedModel):
        self.gated = gated
        self.saved: dict[torch.nn.Parameter, bool] = {}

    def on_train_begin(self, state: TrainState) -> None:
        gate_params = {id(p) for g in self.gated.gates.values() for p in g.gate.parameters()}
        for p in self.gated.model.parameters():
            self.saved[p] = p.requires_grad
            p.requires_grad_(id(p) in gate_params)
        state.rebuild_optimizer()

    def on_epoch_begin(self, state: TrainState) -> None:
        for m in self.gated.model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()

    def on_train_end(self, state: TrainState) -> None:
        for p, flag in self.saved.items():
            p.requires_grad_(flag)


def train_gated(gated: GatedModel, data, config: TrainConfig, schedule: GateSchedule,
                callbacks: Sequence[Callback] = ()) -> list[TrainResult]:
    """Warm up the gates, then train everything (``callbacks`` watch both); returns each
    phase's result."""
    steps = _steps_per_epoch(data, config)
    total = steps * (schedule.warmup_epochs + schedule.joint_epochs)
    ramp = DensityRamp(gated, schedule.density, math.ceil(schedule.ramp * total))
    l1 = SaliencyL1(gated, schedule.l1)
    results = []
    if schedule.warmup_epochs > 0:
        warm = dataclasses.replace(config, epochs=schedule.warmup_epochs, warmup_epochs=0.0)
        results.append(fit(gated.model, data, warm, callbacks=[FrozenBase(gated), ramp, l1, *callbacks]))
    if schedule.joint_epochs > 0:
        joint = dataclasses.replace(config, epochs=schedule.joint_epochs, warmup_epochs=0.0)
        results.append(fit(gated.model, data, joint, callbacks=[ramp, l1, *callbacks]))
    gated.set_density(schedule.density)
    return results


def _steps_per_epoch(data, config: TrainConfig) -> int:
    steps = len(make_loader(data.train, config.batch_size, shuffle=True))
    return min(steps, config.max_steps_per_epoch) if config.max_steps_per_epoch else steps
