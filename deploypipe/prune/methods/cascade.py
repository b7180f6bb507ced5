"""Cascaded channel pruning with hierarchical self-distillation (Miles & Mikolajczyk,
BMVC 2020), on channel groups. There is no public code; this is our reading of the abstract
(``../shared/METHODS.md``), the first open implementation.

The reading implemented here:

* **One network, nested levels.** The teacher T (all channels), k teaching assistants and
  the student S are one model with one set of weights; each level is a channel mask at the
  consumers of every prunable group (``ConsumerMasks``, one set of tensors switched before
  each level's forward), and each level keeps a subset of the level above:
  S ⊆ TA_k ⊆ ... ⊆ TA_1 ⊆ T (:mod:`deploypipe.prune.nested`).
* **Levels.** Assistant i sits ``t_i`` of the way from T to S on a geometric path of cost
  (MACs, parameters, or kept channels for a ratio budget): by default ``assistants`` = 1
  at t = 1/2, the geometric mean; ``levels=0.3,0.6`` places them explicitly. The widths
  of a level come from the build's allocation at its sub-budget.
* **Distinct levels** (:func:`place_levels`). Rounding to ``--round-to`` makes the widths
  a level can have coarse: with uniform allocation and multiples of 8, ResNet-56 at 2x
  fewer MACs gives t = 1/2 exactly the student's widths, and the cascade would be
  teacher -> student plus a duplicate. So before training every width vector the
  allocation can produce between teacher and student is listed (64 positions on the
  path and the requested ones), and each assistant goes to the distinct one nearest its requested position
  (strictly between its neighbours). When the rounding leaves fewer distinct levels than
  assistants, the method refuses, saying how many there are.
* **Training loss** per step = the teacher's task loss (cross-entropy; with ``--distill``,
  the build's distillation from the frozen dense model, since this training replaces the
  fine-tuning that ``--distill`` configures) + for each consecutive pair
  (T, TA_1), ..., (TA_k, S) the distillation loss of ``deploypipe.train.losses``,
  alpha * tau^2 * KL(p_teacher || p_student) + (1 - alpha) * CE, the pair's teacher
  detached. Pure KD (alpha = 1) would give no first-order saliency while a level still
  equals its teacher (the KL's gradient vanishes at equal outputs), hence the mixture.
* **Saliency from its own teacher.** Because each pair's teacher is detached, the gradient
  of the total loss at level i's masks is the gradient of level i's own distillation loss
  from level i-1: the Taylor score |sum_n dL_i/dm_c|, accumulated (per batch, in absolute
  value) between pruning events, summed over the processes of a distributed run.
* **Schedule.** ``events`` pruning events spread over the first ``prune_frac`` of the
  training steps; at event j every level moves j/events of the way (geometrically) to its
  target and keeps, among the channels both it and its parent still keep, the most
  salient ones (top-down, so nesting holds). Saliencies reset after each event. Then
  training goes on with fixed masks.
* **End.** BatchNorm statistics are shared by all levels, so they are re-estimated for
  the student (``bn_batches`` training batches, cumulative average), then the student's
  channels are removed physically through ``ctx.prune``. The method trains for the
  build's ``--epochs`` itself, so ``finetunes = True``: its training, with the chain of
  assistants, replaces build's plain fine-tuning.
"""
from __future__ import annotations

import numpy as np
import torch

from ...errors import BudgetError
from ...train import Callback, DistillConfig, TrainState, distillation_loss, fit
from ...train.batchnorm import recalibrate_batchnorm
from ..budget import CHANNEL_BUDGETS
from ..nested import Level, full_level, is_nested, level_fractions, nested_select
from ..torch_groups import ConsumerMasks
from .base import METHODS, Param, PruneContext, PruneMethod
from .phase import TASK_LOSS, PhaseProgress, distill_description, plan_phase, steps_per_epoch

PLACEMENT_GRID = 64  # positions on the teacher -> student path tried when placing assistants


@METHODS.register("cascade")
class Cascade(PruneMethod):
    name = "cascade"
    needs_training_data = True
    description = ("cascaded pruning with hierarchical self-distillation (Miles & Mikolajczyk 2020): teacher, "
                   "teaching assistants and student as nested channel masks of one network, each pruned by "
                   "Taylor saliency of the distillation loss from the level above")
    params = {"assistants": Param(1, "teaching assistants between teacher and student"),
              "levels": Param("", "assistant positions t in (0, 1) on the geometric cost path, e.g. 0.33,0.67"),
              "tau": Param(4.0, "distillation temperature"),
              "alpha": Param(0.9, "weight of the KL term in each pair's distillation loss (the rest is CE)"),
              "prune_frac": Param(0.5, "share of the training steps over which the levels are pruned"),
              "events": Param(4, "pruning events"),
              "bn_batches": Param(20, "training batches that re-estimate the student's BatchNorm statistics")}
    finetunes = True
    budgets = CHANNEL_BUDGETS  # intermediate levels are placed on the budget's measure

    def run(self, ctx: PruneContext) -> None:
        """Place distinct levels, announce the training, train the chain for the build's
        epochs, re-estimate BatchNorm for the student and remove its channels."""
        from ._live import require_data

        require_data(ctx, "cascade", "trains its levels")
        self.check_budget(ctx.request.budget)
        requested = level_fractions(int(self.param("assistants")), str(self.param("levels")))
        fractions = place_levels(ctx, requested)
        distill = DistillConfig(float(self.param("tau")), float(self.param("alpha")))
        events = event_steps(ctx, float(self.param("prune_frac")), int(self.param("events")))
        chain = CascadeChain(ctx, fractions, distill, events, requested)
        phase = plan_phase(ctx, self.name, "build epochs", steps_per_epoch(ctx.data, ctx.train_config) *
                           ctx.train_config.epochs, f"{len(fractions) - 1} assistant(s) at t = "
                           f"{', '.join(f'{t:.2f}' for t in fractions[:-1]) or '-'}, {len(events)} pruning "
                           f"events by step {events[-1]}, each step a forward per level")
        phase.announce()
        ctx.losses["scoring"] = (f"each level: Taylor saliency of its distillation from the level above "
                                 f"({distill.alpha:g} x tau^2 KL at tau {distill.tau:g} + "
                                 f"{1 - distill.alpha:g} x cross-entropy)")
        ctx.losses["prune_training"] = ("teacher level: " + (distill_description(ctx) if ctx.teacher is not None
                                                             else TASK_LOSS) + "; + the chain's distillation terms")
        progress = PhaseProgress(phase, lambda: f"{chain.done}/{len(events)} pruning events")
        try:
            fit(ctx.model, ctx.data, ctx.train_config, teacher=ctx.teacher, callbacks=[chain, progress])
            chain.finish()
            chain.use(len(chain.levels) - 1)
            recalibrate_batchnorm(ctx.model, ctx.data.train, batches=int(self.param("bn_batches")),
                                  batch_size=ctx.train_config.batch_size, seed=ctx.request.seed)
        finally:
            chain.close()
        student = chain.levels[-1]
        drop = {gid: np.flatnonzero(~mask) for gid, mask in student.items() if (~mask).any()}
        ctx.prune(drop, method="cascade", **chain.record())


def event_steps(ctx: PruneContext, prune_frac: float, events: int) -> list[int]:
    """The optimizer steps after which pruning events happen (strictly increasing, >= 1)."""
    cfg = ctx.train_config
    total = max(1, steps_per_epoch(ctx.data, cfg) * cfg.epochs)
    n = max(1, min(int(events), total))
    span = min(total, max(n, round(min(max(prune_frac, 0.0), 1.0) * total)))
    return sorted({max(j, round(j * span / n)) for j in range(1, n + 1)})


def level_cost(ctx: PruneContext, widths: np.ndarray) -> float:
    """The budget's measure of ``widths``: MACs, parameters, or kept prunable channels."""
    return float(ctx.request.budget.measure(ctx.state())(widths))


def place_levels(ctx: PruneContext, requested: list[float]) -> list[float]:
    """Assistant positions (then 1.0, the student) whose widths, as the build's allocation
    and rounding make them, differ from the teacher's, the student's and each other's, each
    nearest (in position on the geometric cost path) to its ``requested`` t; refused when
    the rounding allows fewer distinct levels than assistants."""
    from .increg import channel_l1

    wanted = requested[:-1]
    if not wanted:
        return [1.0]
    budget, scores = ctx.request.budget, channel_l1(ctx.pruner)
    grid = {k / PLACEMENT_GRID for k in range(1, PLACEMENT_GRID + 1)} | set(wanted)  # the asked-for t first
    widths = {t: ctx.keep_toward(t, scores) for t in sorted(grid)}
    student, teacher = widths[1.0], ctx.pruner.widths()
    span = min(float(np.log(level_cost(ctx, student) / level_cost(ctx, teacher))), -1e-12)
    found: dict[tuple, tuple[float, list[float]]] = {}  # distinct widths -> (position, the t giving them)
    for t, w in widths.items():
        position = float(np.log(level_cost(ctx, w) / level_cost(ctx, teacher))) / span
        if tuple(w) not in (tuple(student), tuple(teacher)) and 0.0 < position < 1.0:
            found.setdefault(tuple(w), (position, []))[1].append(t)
    candidates = sorted(found.values())
    if len(candidates) < len(wanted):
        raise BudgetError(f"cascade cannot place {len(wanted)} teaching assistant(s) at widths distinct from "
                          f"the teacher's, the student's and each other's: --round-to {ctx.request.round_to} "
                          f"allows {len(candidates)} such level(s) at {budget.describe()}",
                          hint=f"use assistants={len(candidates)}, a smaller --round-to, or a larger budget")
    placed, start = [], 0
    for i, t in enumerate(wanted):
        stop = len(candidates) - (len(wanted) - i) + 1  # leave one candidate for each later assistant
        j = min(range(start, stop), key=lambda k: abs(candidates[k][0] - t))
        placed.append(min(candidates[j][1], key=lambda u: abs(u - t)))
        start = j + 1
    return placed + [1.0]


class CascadeChain(Callback):
    """Level masks, the chain's distillation terms, saliency accumulation and the events."""

    def __init__(self, ctx: PruneContext, fractions: list[float], distill: DistillConfig, events: list[int],
                 requested: list[float] | None = None):
        self.ctx, self.fractions, self.distill, self.events = ctx, fractions, distill, events
        groups = [g for g in ctx.pruner.groups if ctx.pruner.is_prunable(g)]
        self.widths = {g.id: int(g.width) for g in groups}
        self.levels: list[Level] = [full_level(self.widths) for _ in range(len(fractions) + 1)]
        self.saliency = [self._zeros() for _ in fractions]
        self.masks: ConsumerMasks | None = ConsumerMasks(ctx.pruner, groups).__enter__()
        self.leaves: list[dict[int, torch.Tensor]] = []
        self.done = 0
        self.requested = list(requested or fractions)  # the positions asked for, before placement

    def _zeros(self) -> dict[int, np.ndarray]:
        return {gid: np.zeros(w) for gid, w in self.widths.items()}

    def use(self, level: int) -> dict[int, torch.Tensor]:
        """Switch the masks to ``level`` for the next forward; returns its mask leaves."""
        assert self.masks is not None
        for gid, mask in self.levels[level].items():
            self.masks.set(gid, mask.astype(np.float32))
        self.masks.begin()
        return dict(self.masks.live)

    # -- training hooks -------------------------------------------------------------
    def on_batch_begin(self, state: TrainState) -> None:
        self.leaves = [self.use(0)]  # fit's own forward is the teacher's

    def extra_loss(self, state: TrainState) -> torch.Tensor | None:
        teacher, total = state.outputs, None
        for i in range(1, len(self.levels)):
            self.leaves.append(self.use(i))
            logits = state.net(state.inputs)
            term = distillation_loss(logits, teacher, state.targets, self.distill,
                                     label_smoothing=state.config.label_smoothing)
            total = term if total is None else total + term
            teacher = logits
        return total

    def on_after_backward(self, state: TrainState) -> None:
        for sal, leaves in zip(self.saliency, self.leaves[1:]):
            for gid, leaf in leaves.items():
                if leaf.grad is not None:
                    sal[gid] += np.abs(leaf.grad.detach().double().cpu().numpy())
        self.leaves = []

    def on_step_end(self, state: TrainState) -> None:
        while self.done < len(self.events) and state.step >= self.events[self.done]:
            self.event()
        self.use(len(self.levels) - 1)  # validation between epochs sees the student

    # -- pruning events -------------------------------------------------------------
    def event(self) -> None:
        """Move every level ``1/events`` further towards its target, top-down."""
        self.done += 1
        progress = self.done / len(self.events)
        self.saliency = [self.ctx.sum_over_ranks(s) for s in self.saliency]  # every rank decides alike
        for i, t in enumerate(self.fractions, start=1):
            parent, current = self.levels[i - 1], self.levels[i]
            scores = {gid: np.where(parent[gid] & current[gid], s, 0.0) for gid, s in self.saliency[i - 1].items()}
            keep = self.ctx.keep_toward(t * progress, scores)
            self.levels[i] = nested_select(parent, current, self.saliency[i - 1],
                                           {gid: int(keep[gid]) for gid in self.widths})
        self.saliency = [self._zeros() for _ in self.fractions]

    def finish(self) -> None:
        """Apply the events a short run did not reach."""
        while self.done < len(self.events):
            self.event()

    def record(self) -> dict:
        """What the report keeps: each level's position, kept channels and MACs."""
        out = []
        for t, asked, level in zip([0.0, *self.fractions], [0.0, *self.requested], self.levels):
            widths = self.ctx.dense_widths.copy()
            for gid, mask in level.items():
                widths[gid] = int(mask.sum())
            out.append({"t": t, "t_requested": asked, "channels": int(sum(int(m.sum()) for m in level.values())),
                        "macs": float(self.ctx.dense_cost.macs(widths)), "widths": [int(w) for w in widths]})
        distinct = all(a["widths"] != b["widths"] for a, b in zip(out, out[1:]))
        for level in out:
            del level["widths"]
        return {"levels": out, "nested": bool(is_nested(self.levels)), "distinct": distinct, "events": self.events}

    def close(self) -> None:
        if self.masks is not None:
            self.masks.__exit__(None, None, None)
            self.masks = None
