"""The pruning phase of the methods that prune while they train, in the units of the data
they are given, and which loss each phase of a build trains or scores with.

* **Schedules in epochs.** The papers state their schedules in iterations of ImageNet
  (Group Fisher: one channel every 25; IncReg: about 10^4 rankings; GReg: 10^5
  iterations). Run as written on a small dataset that is thousands of epochs. Each such
  method therefore has ``schedule``: ``fit`` (the default) derives its increments from
  ``prune_epochs`` epochs of the data given, so that the target is reached inside that
  budget; ``paper`` keeps the papers' increments and takes as long as they take.
  :class:`Phase` says before training what the phase will take (steps and epochs of
  this data) and :class:`PhaseProgress` reports after every epoch how far it got.
* **Losses.** ``--distill`` is a fine-tuning option: the loss a method scores channels
  with, and trains with while pruning, is the task loss unless the method's
  ``loss=distill`` asks for distillation from the dense model. ``ctx.losses`` records,
  per phase, which loss was used; the build report shows it.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

from ...errors import InputError
from ...train import Callback, TrainState, is_rank_zero, make_loader
from ...utils.log import get_logger
from .base import Param, PruneContext

log = get_logger("prune")
SCHEDULES = ("fit", "paper")
LOSSES = ("task", "distill")
TASK_LOSS = "task loss (cross-entropy)"
FIT_SHARE = 0.9  # share of the phase budget a fit schedule plans to use (the rest is slack)
LONG_PHASE_EPOCHS = 100  # a paper schedule longer than this gets a warning before it starts


def phase_params(epochs: float) -> dict[str, Param]:
    """The parameters every prune-while-training method shares."""
    return {
        "schedule": Param("fit", "fit: increments derived so the target is reached within prune_epochs epochs "
                                 "of the data given; paper: the paper's increments, however long they take"),
        "prune_epochs": Param(epochs, "schedule=fit: epochs of the training data the pruning phase may take"),
        "loss": Param("task", "loss to score and train with while pruning: task (cross-entropy) or distill "
                              "(from the dense model; needs --distill)"),
    }


def steps_per_epoch(data, config) -> int:
    """Optimizer steps in one epoch of ``data.train`` under the training ``config``."""
    steps = len(make_loader(data.train, config.batch_size, shuffle=True))
    if config.max_steps_per_epoch:
        steps = min(steps, config.max_steps_per_epoch)
    return max(1, steps)


def check_schedule(schedule: str, prune_epochs: float, name: str) -> None:
    if schedule not in SCHEDULES:
        raise InputError(f"unknown schedule {schedule!r} for {name}", hint="use schedule=fit or schedule=paper")
    if not prune_epochs > 0:
        raise InputError(f"{name}'s prune_epochs must be positive, got {prune_epochs}", hint="e.g. prune_epochs=10")


@dataclass(frozen=True)
class Phase:
    """What a pruning phase will take, said before it starts: planned optimizer steps (the
    target is reached by then), their length in epochs of the data, and how (``detail``)."""

    name: str
    schedule: str
    steps: int
    steps_per_epoch: int
    images: int
    batch_size: int
    detail: str

    @property
    def epochs(self) -> float:
        return self.steps / self.steps_per_epoch

    def fit_epochs(self) -> int:
        """Epochs to hand to ``fit``: the plan and one epoch of slack (a callback stops it)."""
        return math.ceil(self.steps / self.steps_per_epoch) + 1

    def describe(self) -> str:
        return (f"{self.name} ({self.schedule} schedule): {self.detail}; about {self.steps:,} steps = "
                f"{self.epochs:.3g} epochs of {self.images:,} images at batch {self.batch_size}")

    def announce(self) -> None:
        """Log the plan before training; warn when it is long."""
        if not is_rank_zero():
            return
        log.info(self.describe())
        if self.epochs > LONG_PHASE_EPOCHS:
            log.warning(f"{self.name}: the paper's schedule takes {self.epochs:,.0f} epochs of this data; "
                        f"schedule=fit bounds it to prune_epochs")

    def to_dict(self) -> dict:
        return {"schedule": self.schedule, "planned_steps": self.steps, "planned_epochs": round(self.epochs, 3),
                "steps_per_epoch": self.steps_per_epoch, "detail": self.detail}


def plan_phase(ctx: PruneContext, name: str, schedule: str, steps: int, detail: str) -> Phase:
    """A :class:`Phase` of ``steps`` optimizer steps on the build's training data."""
    cfg = ctx.train_config
    return Phase(name, schedule, max(1, int(steps)), steps_per_epoch(ctx.data, cfg), len(ctx.data.train),
                 cfg.batch_size, detail)


def budget_steps(ctx: PruneContext, prune_epochs: float) -> int:
    """The steps a fit schedule may plan: ``FIT_SHARE`` of ``prune_epochs`` epochs."""
    return max(1, math.floor(FIT_SHARE * prune_epochs * steps_per_epoch(ctx.data, ctx.train_config)))


class PhaseProgress(Callback):
    """After every epoch of the phase: steps taken of those planned (counted across the
    fits it watches), what ``status`` says (channels removed, ...), and the time left at
    the pace so far."""

    def __init__(self, phase: Phase, status: Callable[[], str]):
        self.phase, self.status = phase, status
        self.start: float | None = None
        self.steps = 0
        self.lines: list[str] = []

    def on_train_begin(self, state: TrainState) -> None:
        if self.start is None:
            self.start = time.perf_counter()

    def on_step_end(self, state: TrainState) -> None:
        self.steps += 1

    def on_epoch_end(self, state: TrainState) -> None:
        elapsed = time.perf_counter() - (self.start or time.perf_counter())
        left = max(0, self.phase.steps - self.steps) * elapsed / max(self.steps, 1)
        line = (f"{self.phase.name}: step {self.steps:,}/{self.phase.steps:,} "
                f"({min(1.0, self.steps / self.phase.steps):.0%}), {self.status()}, "
                f"{elapsed:.0f} s so far, ~{left:.0f} s left")
        self.lines.append(line)
        if is_rank_zero():
            log.info(line)


# -- losses -------------------------------------------------------------------------------
def distill_description(ctx: PruneContext) -> str:
    """How the build distils from the dense model (its DistillConfig)."""
    from ...train import DistillConfig

    d = (ctx.train_config.distill if ctx.train_config is not None else None) or DistillConfig()
    return (f"distillation from the dense model ({d.alpha:g} x tau^2 KL at tau {d.tau:g} "
            f"+ {1 - d.alpha:g} x cross-entropy)")


def phase_teacher(ctx: PruneContext, loss: str, name: str):
    """The teacher ``fit`` gets while pruning: None for the task loss, the dense model for
    ``distill`` (refused without ``--distill``); records the loss in ``ctx.losses``."""
    if loss not in LOSSES:
        raise InputError(f"unknown loss {loss!r} for {name}", hint="use loss=task or loss=distill")
    if loss == "distill" and ctx.teacher is None:
        raise InputError(f"{name}'s loss=distill distils from the dense model, which only --distill provides",
                         hint="add --distill, or use loss=task")
    return ctx.teacher if loss == "distill" else None


def loss_description(ctx: PruneContext, loss: str) -> str:
    return distill_description(ctx) if loss == "distill" else TASK_LOSS


def finetune_loss(ctx: PruneContext, finetuned: bool, method_trains: bool) -> str:
    """What build's fine-tuning stage trained with, for the report."""
    if not finetuned:
        return "none: the method's own training replaced fine-tuning" if method_trains else "none: no fine-tuning"
    return distill_description(ctx) if ctx.teacher is not None else TASK_LOSS
