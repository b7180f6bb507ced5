"""Group Fisher pruning (Liu et al., "Group Fisher Pruning for Practical Network
Compression", ICML 2021), on deploypipe's channel groups.

The reading implemented here:

* **Coupled channels share one mask.** The paper's layer grouping is our channel group:
  a mask m = 1 multiplies channel c at every consumer of the group (``ConsumerMasks``),
  so one gradient covers all coupled layers (residual streams, depthwise pairs, concats).
* **Score.** Per sample n, dL_n/dm_c = sum over h, w and every consumer of A * dL/dA;
  s_c = sum_n (dL_n/dm_c)^2, accumulated over the d iterations since the last removal.
  The training loss is a batch mean, so the mask gradient of a batch of N is
  (1/N) dL_n/dm per sample: it is multiplied by N before squaring, which makes s_c
  independent of the batch size (the paper's code leaves the 1/N in; it does not change
  the argmin at a fixed batch size, but does across a short last batch).
* **Normalisation.** s_c is divided by what removing one channel of its group saves,
  recomputed from the widths alive now: ``memory`` (default, the paper's 'acts'): the
  feature-map elements per channel and sample of the outputs of the convolutions (and
  matrix products) that produce the group, the conv outputs the channel removes
  (``CostModel.output_per_channel``); ``memory_all``: every activation the channel occupies,
  BatchNorm, ReLU, Add, pool and Flatten outputs included (``activation_per_channel``, 3-4x
  the paper's term and uneven across groups: residual streams weigh more); or ``macs``
  (``CostModel.marginal_macs``).
* **Schedule.** Train at ``lr_scale`` x the fine-tuning rate (the paper prunes at 0.04 x
  its training rate; the build's ``--lr`` is the fine-tuning rate, so pass a larger
  ``lr_scale`` to tie it to a pre-training rate), with the task loss (``loss=distill``:
  distillation from the dense model). ``schedule=paper``: every ``d`` iterations remove
  the channel with the lowest normalised score in the whole network (``per_step`` > 1
  removes that many, re-normalising after each), reset the accumulators, until the budget
  is met, however long that takes. ``schedule=fit`` (default): the same removal events,
  planned to end within ``prune_epochs`` epochs of the data given: d is the paper's 25 where
  the budget allows one channel per 25 iterations, else fewer (down to 5), and event j of E
  removes lowest-score channels, one at a time, until j/E of the way to the budget is made.
  Then ``build`` fine-tunes (``--distill`` for distillation from the dense model).
* **Budgets**: ``--ratio`` (fraction of all prunable channels, the method being global),
  ``--macs-budget`` and ``--params-budget``, measured on the widths alive; a latency
  budget is refused (``budgets``) until a latency model can price single channels.
* **Removal** is a 0 mask at once and a physical slice every ``slim_every`` removals and
  at the end (see :mod:`._live` for why), so the exported model is smaller.
* **Rounding to --round-to** (our addition; the paper removes single channels): once the
  budget is met, accumulate ``d`` more iterations of scores, move every group to the
  nearest allowed width (a multiple of round_to, or the dense width; never below the
  floor), reviving the channels removed last where a group rounds up (slims while pruning
  keep the last round_to - 1 removed channels of each group masked rather than sliced, so
  rounding up stays possible), and, while the
  budget is no longer met, lower by one block the group whose block costs the least
  Fisher information per unit of saved cost; then raise back, most valuable first, any
  block that still fits. The result meets the budget and is aligned.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from ...errors import BudgetError, InputError
from ...train import Callback, TrainState
from ..budget import CHANNEL_BUDGETS
from ._live import LiveChannels, budget_met, check_reachable, floors, require_data, train_phase
from .base import METHODS, Param, PruneContext, PruneMethod
from .phase import (Phase, PhaseProgress, budget_steps, check_schedule, loss_description, phase_params,
                    phase_teacher, plan_phase)

NORMALIZERS = ("memory", "memory_all", "macs", "none")
PAPER_D = 25
FIT_MIN_D = 5  # schedule=fit never accumulates fewer iterations than this between removals


def channel_cost(ctx: PruneContext, widths: np.ndarray, normalize: str) -> np.ndarray:
    """Per group: what removing one of its channels saves at ``widths`` (the divisor)."""
    if normalize == "memory":
        return np.asarray(ctx.dense_cost.output_per_channel, dtype=np.float64)
    if normalize == "memory_all":
        return np.asarray(ctx.dense_cost.activation_per_channel, dtype=np.float64)
    if normalize == "macs":
        return np.asarray(ctx.dense_cost.marginal_macs(widths), dtype=np.float64)
    return np.ones(len(widths))


def lowest_channel(sums: dict[int, np.ndarray], alive: dict[int, np.ndarray], cost: np.ndarray,
                   floor: np.ndarray) -> tuple[int, int] | None:
    """(group, channel) with the lowest s_c / cost among alive channels of groups above
    their floor; None when no group may lose a channel."""
    best, best_value = None, np.inf
    for gid, a in alive.items():
        if a.sum() <= floor[gid] or cost[gid] <= 0:
            continue
        s = np.where(a, sums[gid], np.inf)
        i = int(np.argmin(s))
        value = s[i] / cost[gid]
        if best is None or value < best_value:
            best, best_value = (gid, i), value
    return best


class FisherScores(Callback):
    """Accumulates s_c = sum_n (dL_n/dm_c)^2 from per-sample consumer masks."""

    def __init__(self, live: LiveChannels):
        self.live = live
        self.reset()

    def reset(self) -> None:
        self.sums = {gid: np.zeros(len(a)) for gid, a in self.live.alive.items()}
        self.batches = 0

    def on_batch_begin(self, state: TrainState) -> None:
        self.live.begin(int(state.inputs.shape[0]))  # type: ignore[union-attr]

    def on_after_backward(self, state: TrainState) -> None:
        n = int(state.inputs.shape[0])  # type: ignore[union-attr]
        # undo the batch mean (dL_n/dm, not dL_n/dm / N); under DDP each rank saw its own
        # shard, so the scores are summed over ranks and every rank removes the same channel
        step = {gid: ((grad.detach().double() * n) ** 2).sum(0).cpu().numpy()
                for gid, grad in self.live.grads().items()}
        for gid, s in self.live.ctx.sum_over_ranks(step).items():
            self.sums[gid] += s
        self.batches += 1

    def on_step_end(self, state: TrainState) -> None:
        self.live.begin()  # masks shared by any batch size, for validation between epochs


# -- rounding to the target's channel multiple ------------------------------------------
def allowed_below(width: int, dense: int, step: int) -> int:
    """The next allowed width under ``width``: multiples of ``step`` and the dense width."""
    if step <= 1 or dense <= step:
        return width - 1
    if width % step:
        return (width // step) * step
    return width - step


def allowed_above(width: int, dense: int, step: int) -> int | None:
    """The next allowed width over ``width`` (None at the dense width)."""
    if width >= dense:
        return None
    if step <= 1 or dense <= step:
        return width + 1
    return min((width // step + 1) * step, dense)


def nearest_allowed(width: int, dense: int, step: int, ceiling: int) -> int:
    """The allowed width nearest to ``width`` (ties round up) that does not exceed ``ceiling``."""
    if step <= 1 or dense <= step or width % step == 0 or width == dense:
        return width
    low = (width // step) * step
    high = min(low + step, dense)
    return high if high <= ceiling and high - width <= width - low else low


def round_widths(widths: np.ndarray, ceiling: np.ndarray, dense: np.ndarray, floor: np.ndarray,
                 groups: Sequence[int], step: int, met: Callable[[np.ndarray], bool],
                 price: Callable[[int, np.ndarray, int], tuple]) -> np.ndarray:
    """Aligned widths meeting ``met``: nearest allowed width per group; then one block
    lower at a time for the group of smallest ``price(group, target, lowered)`` until the
    budget is met; then one block back up, most valuable first, wherever it still fits."""
    target = np.asarray(widths, dtype=np.int64).copy()
    for g in groups:
        target[g] = max(nearest_allowed(int(widths[g]), int(dense[g]), step, int(ceiling[g])), int(floor[g]))
    while not met(target):
        options = [(g, allowed_below(int(target[g]), int(dense[g]), step)) for g in groups]
        options = [(g, low) for g, low in options if low >= floor[g]]
        if not options:
            raise BudgetError("rounding to the channel multiple cannot meet the budget",
                              hint="use a smaller --round-to or a looser budget")
        g, low = min(options, key=lambda o: price(o[0], target, o[1]))
        target[g] = low
    return _give_back(target, ceiling, dense, groups, step, met, price)


def _give_back(target: np.ndarray, ceiling: np.ndarray, dense: np.ndarray, groups: Sequence[int], step: int,
               met: Callable[[np.ndarray], bool], price: Callable[[int, np.ndarray, int], tuple]) -> np.ndarray:
    """Raise groups by one allowed step while the budget stays met, the block that would
    cost the most information to lose first (lowering overshoots by up to a block)."""
    while True:
        options = []
        for g in groups:
            high = allowed_above(int(target[g]), int(dense[g]), step)
            if high is None or high > ceiling[g]:
                continue
            raised = target.copy()
            raised[g] = high
            if met(raised):
                options.append((price(g, raised, int(target[g])), g, raised))
        if not options:
            return target
        target = max(options, key=lambda o: o[0])[2]


class GroupFisherSchedule(Callback):
    """Every ``d`` iterations removes the lowest normalised channel(s) and resets the
    scores; at the budget rounds to ``round_to``, slims and stops training.

    ``events`` > 0 (schedule=fit): removal event j removes channels until j/``events`` of
    the way to the budget is made; 0 (schedule=paper): each event removes ``per_step``."""

    def __init__(self, ctx: PruneContext, live: LiveChannels, scores: FisherScores, *, d: int,
                 normalize: str, per_step: int, slim_every: int, max_iterations: int, events: int = 0):
        self.ctx, self.live, self.scores = ctx, live, scores
        self.d, self.normalize, self.per_step, self.events = d, normalize, per_step, events
        self.slim_every, self.max_iterations = slim_every, max_iterations
        self.floor = floors(ctx)
        self.phase = "prune"  # prune -> round -> done
        self.iteration = 0
        self.removed = 0
        self.removals = 0  # removal events so far
        self.forced = False
        self.plan: Phase | None = None

    def start(self) -> None:
        """Nothing to remove (the dense model meets the budget): go straight to rounding."""
        if budget_met(self.ctx, self.live.widths()):
            self.phase = "round"

    def most_iterations(self) -> int:
        """An upper bound of the iterations this schedule can take (every removable channel
        removed, one more window for rounding), capped by ``max_iterations``."""
        removable = sum(max(0, int(a.sum()) - int(self.floor[gid])) for gid, a in self.live.alive.items())
        events = self.events or math.ceil(removable / self.per_step)
        return min(self.max_iterations, self.d * (events + 2))

    def on_step_end(self, state: TrainState) -> None:
        self.iteration += 1
        if self.phase == "done":
            return
        if self.iteration >= self.max_iterations:
            self.forced = True
            self._complete(state)
        elif self.scores.batches >= self.d:
            self._prune_step(state) if self.phase == "prune" else self._complete(state)

    def on_train_end(self, state: TrainState) -> None:
        if self.phase != "done":  # ran out of epochs: finish on the scores gathered so far
            self.forced = True
            self._complete(state)

    def _prune_step(self, state: TrainState) -> None:
        """One removal event: ``per_step`` channels (paper) or up to this event's share of
        the budget (fit); then round at the budget, or slim and reset the scores."""
        self.removals += 1
        if self.events:
            share = min(1.0, self.removals / self.events)
            while not budget_met(self.ctx, self.live.widths(), share):
                self._remove_lowest()
        else:
            for _ in range(self.per_step):
                if budget_met(self.ctx, self.live.widths()):
                    break
                self._remove_lowest()
        if budget_met(self.ctx, self.live.widths()):
            self.phase = "round"
            if self.ctx.request.round_to <= 1:
                self._complete(state)
                return
        elif self.slim_every and self.live.dead_count(self._revivable) >= self.slim_every:
            self.live.slim(state, keep_recent=self._revivable, **self._record())
        self.scores.reset()

    @property
    def _revivable(self) -> int:
        """Channels per group kept masked (not sliced) by a slim, so rounding can round up."""
        return max(0, self.ctx.request.round_to - 1)

    def _remove_lowest(self) -> None:
        cost = channel_cost(self.ctx, self.live.widths(), self.normalize)
        pick = lowest_channel(self.scores.sums, self.live.alive, cost, self.floor)
        if pick is None:
            raise BudgetError(f"group_fisher cannot meet {self.ctx.request.budget.describe()}: every group is at "
                              "its floor", hint="ask for less, or allow more with --max-ratio")
        self.live.kill(*pick)
        self.removed += 1

    def _complete(self, state: TrainState) -> None:
        while not budget_met(self.ctx, self.live.widths()):
            self._remove_lowest()
        self._round()
        self.live.slim(state, **self._record())
        self.live.close()
        self.phase = "done"
        state.stop = True

    # -- rounding --------------------------------------------------------------------
    def _round(self) -> None:
        step = self.ctx.request.round_to
        if step <= 1:
            return
        widths = self.live.widths()
        ceiling = widths.copy()
        for gid, killed in self.live.killed.items():
            ceiling[gid] += len(killed)
        target = round_widths(widths, ceiling, self.ctx.dense_widths, self.floor, list(self.live.alive), step,
                              lambda w: budget_met(self.ctx, w), self._price)
        for gid, alive in self.live.alive.items():
            k, t = int(alive.sum()), int(target[gid])
            if t < k:
                self.live.kill(gid, self._ranked(gid)[:k - t])
            elif t > k:
                self.live.revive(gid, t - k)

    def _ranked(self, gid: int) -> np.ndarray:
        """Alive channels of ``gid``, lowest score first."""
        alive = np.flatnonzero(self.live.alive[gid])
        return alive[np.argsort(self.scores.sums[gid][alive], kind="stable")]

    def _price(self, gid: int, target: np.ndarray, low: int) -> tuple:
        """(Fisher information lost per unit of cost saved, -cost saved) of lowering ``gid``."""
        k = int(self.live.alive[gid].sum())
        ranked = self._ranked(gid)
        lost = float(self.scores.sums[gid][ranked[max(0, k - int(target[gid])):max(0, k - low)]].sum())
        lowered = target.copy()
        lowered[gid] = low
        saved = self._cost(target) - self._cost(lowered)
        return (lost / saved if saved > 0 else np.inf, -saved)

    def _cost(self, widths: np.ndarray) -> float:
        if self.normalize == "macs":
            return self.ctx.dense_cost.macs(widths)
        return float(np.dot(channel_cost(self.ctx, widths, self.normalize), widths))

    def _record(self) -> dict:
        record = {"method": "group_fisher", "iteration": self.iteration, "channels_masked": self.removed,
                  "removal_events": self.removals, "normalize": self.normalize, "forced": self.forced}
        return {**record, "phase": self.plan.to_dict()} if self.plan is not None else record


@METHODS.register("group_fisher")
class GroupFisher(PruneMethod):
    name = "group_fisher"
    needs_training_data = True
    description = ("Group Fisher (Liu et al. 2021): while training, remove the channel with the least Fisher "
                   "information per unit of memory (or MACs) every d iterations, until the budget")
    params = {
        **phase_params(10.0),
        "d": Param(PAPER_D, "training iterations between two removals (paper: 25 classification, 10 detection; "
                            "schedule=fit: at most this many)"),
        "normalize": Param("memory", "divide Fisher scores by what a channel saves: memory (the paper's: conv "
                                     "outputs), memory_all (every activation it occupies), macs, or none"),
        "lr_scale": Param(0.04, "learning rate while pruning, as a multiple of the fine-tuning --lr"),
        "per_step": Param(1, "schedule=paper: channels removed at each removal (paper: 1)"),
        "slim_every": Param(32, "slice masked channels out physically once this many are dead (0: at the end)"),
        "max_iterations": Param(100000, "safety: after this many iterations, remove the rest on the scores so far"),
    }
    budgets = CHANNEL_BUDGETS  # a single channel has no measured latency

    def run(self, ctx: PruneContext) -> None:
        """Check, plan and announce the phase, then train with the Fisher scores and the
        removal schedule until the budget is met (the task loss unless loss=distill)."""
        self.check_budget(ctx.request.budget)
        self._check()
        check_reachable(ctx, "group_fisher")
        require_data(ctx, "group_fisher")
        teacher = phase_teacher(ctx, str(self.param("loss")), self.name)
        live = LiveChannels(ctx, per_sample=True)
        try:
            scores = FisherScores(live)
            schedule = self._schedule(ctx, live, scores)
            schedule.start()
            schedule.plan.announce()
            ctx.losses["scoring"] = ctx.losses["prune_training"] = loss_description(ctx, str(self.param("loss")))
            epochs = (schedule.plan.fit_epochs() if self.param("schedule") == "fit" else
                      math.ceil(schedule.most_iterations() / schedule.plan.steps_per_epoch))
            progress = PhaseProgress(schedule.plan, lambda: f"{schedule.removed} channels removed")
            train_phase(ctx, [scores, schedule, progress], lr_scale=float(self.param("lr_scale")), epochs=epochs,
                        teacher=teacher, name="group_fisher")
        finally:
            live.close()

    def _check(self) -> None:
        normalize = str(self.param("normalize"))
        if normalize not in NORMALIZERS:
            raise InputError(f"unknown normalisation {normalize!r} for group_fisher",
                             hint=f"use normalize={' or normalize='.join(NORMALIZERS)}")
        for key in ("d", "per_step", "max_iterations"):
            if int(self.param(key)) < 1:
                raise InputError(f"group_fisher's {key} must be at least 1, got {self.param(key)}")
        check_schedule(str(self.param("schedule")), float(self.param("prune_epochs")), self.name)

    def _schedule(self, ctx: PruneContext, live: LiveChannels, scores: FisherScores) -> GroupFisherSchedule:
        """The removal schedule, with d and the events planned (schedule=fit) or as given."""
        d, per_step, removals = int(self.param("d")), int(self.param("per_step")), removal_estimate(ctx)
        window = d if ctx.request.round_to > 1 else 0  # one more window of scores for rounding
        events = 0
        if self.param("schedule") == "fit":
            budget = budget_steps(ctx, float(self.param("prune_epochs")))
            d = min(d, max(min(d, FIT_MIN_D), budget // max(removals, 1)))
            window = d if ctx.request.round_to > 1 else 0
            events = max(1, min(removals, (budget - window) // d))
            detail = (f"about {removals} channels in {events} removals, one every {d} iterations "
                      f"(Fisher information over d = {d} batches each)")
            steps = events * d + window
        else:
            detail = f"about {removals} channels, {per_step} every {d} iterations"
            steps = math.ceil(removals / per_step) * d + window
        schedule = GroupFisherSchedule(ctx, live, scores, d=d, normalize=str(self.param("normalize")),
                                       per_step=per_step, slim_every=max(0, int(self.param("slim_every"))),
                                       max_iterations=int(self.param("max_iterations")), events=events)
        schedule.plan = plan_phase(ctx, self.name, str(self.param("schedule")), steps, detail)
        return schedule


def removal_estimate(ctx: PruneContext) -> int:
    """Channels a global pruner removes to meet the budget: exact for a ratio (of all
    prunable channels), the build's allocation by L1 for MACs and parameters."""
    from .increg import channel_l1

    budget = ctx.request.budget
    widths = ctx.pruner.widths()
    ids = [g.id for g in ctx.pruner.prunable]
    exact = budget.removal(ctx.state())
    if exact is not None:
        return exact
    keep = ctx.keep_for(budget, channel_l1(ctx.pruner))
    return max(1, int(sum(widths[g] - keep[g] for g in ids)))
