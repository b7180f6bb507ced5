"""Regularisation-driven pruning: IncReg (Wang et al., "Structured Pruning for Efficient
ConvNets via Incremental Regularization", 2018) and its successor GReg (Wang, Qin, Zhang
and Fu, "Neural Pruning via Growing Regularization", ICLR 2021), on channel groups.

The reading implemented here:

* **The regularised unit is one channel of a channel group**, the structured unit that
  pruning removes. METHODS.md's "each prunable group gets its own L2 penalty" uses
  "group" in the paper's sense (a *weight group*: a column or filter of one layer); in
  deploypipe that is channel c of a ``ChannelGroup``. Its weights are every learnable
  slice that removing c deletes: the producer filters, BatchNorm scale and shift, biases
  and the consumers' input slices (not running statistics), the same slices the ``l1``
  criterion sums. Penalising all of them drives the channel's whole contribution to zero,
  so removing it later changes little. The penalty lambda_c/2 * ||w_c||^2 enters as
  ``grad += lambda_c * w`` after backward (the reference implementations do the same), on
  top of the optimizer's weight decay.
* **The "layer"** whose channels are ranked against each other is the channel group, and
  N_prune is the number of its channels that the build's allocation (``--allocation``,
  ``--round-to``, ``--max-ratio``) removes to meet the budget, counted down as channels go.
* **IncReg** (following the authors' Caffe code): every ``k`` iterations rank the alive
  channels of each group by L1 norm (0 = smallest), keep a running average of each
  channel's ranks, order by that average, and add to lambda_c
  delta(r) = A exp(-alpha r) for r < N_c, else 2uA - A exp(-alpha (2 N_c - r)),
  alpha = ln(2/u) / N_prune, N_c = -ln(u) / alpha, with lambda_c = max(lambda_c + delta, 0).
  delta is positive exactly for r < N_prune. A channel whose lambda reaches ``target``
  (1e4 * A) is removed. The paper's A = 2.5e-4 needs 1e4 rankings before the first
  removal; raise A and ``target`` together to compress the schedule on small budgets.
* **GReg-1**: pick the N_prune lowest-L1 channels of each group once; every ``interval``
  iterations add ``delta`` to their lambda until it reaches ``ceiling`` (or their mean L1
  is ``mag_ratio`` times below the kept ones'), keep training ``stabilize`` iterations,
  remove them. **GReg-2** first grows a uniform lambda on every channel of those groups
  (``pick_delta`` up to ``pick_ceiling``) so magnitudes separate, then picks by L1, sets
  the kept channels' lambda to ``recover`` (slightly negative in the reference) and goes
  on as GReg-1.
* **Schedules** (:mod:`.phase`). ``schedule=paper`` runs the increments above as given
  (IncReg: 10^4 rankings before the first removal; GReg-2: about 10^5 iterations).
  ``schedule=fit`` (default) scales them to ``prune_epochs`` epochs of the data given,
  one update per iteration: IncReg's A becomes ``target`` x 6 / updates (the last
  channels of a group go after 2.4-5.3 x target / A rankings); GReg's increments and
  stabilisation take the phase in the paper's proportions (GReg-1: 60% growing, 40%
  stabilising; GReg-2: 10% uniform growth, 50% growing, 40% stabilising). A parameter
  given explicitly is kept. Training uses the task loss (``loss=distill``: distillation
  from the dense model) plus the penalties.
* Removal is a 0 mask at once and a physical slice through ``ctx.prune`` once
  ``slim_every`` channels are dead and at the end (see :mod:`._live`). ``build`` then
  fine-tunes.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from ...errors import InputError
from ...train import Callback, TrainState
from ..importance import ImportanceContext, create_importance
from ..torch_groups import TorchPruner
from ._live import LiveChannels, require_data, train_phase
from .base import METHODS, Param, PruneContext, PruneMethod
from .phase import (Phase, PhaseProgress, budget_steps, check_schedule, loss_description, phase_params,
                    phase_teacher, plan_phase)

_SKIP_KINDS = {"bn_mean", "bn_var"}


def increg_delta(rank: np.ndarray | float, n_prune: int, u: float = 0.25, a: float = 2.5e-4) -> np.ndarray:
    """IncReg's increment of the penalty for the channels at (average-)rank ``rank``."""
    r = np.asarray(rank, dtype=np.float64)
    alpha = math.log(2 / u) / n_prune
    n_c = -math.log(u) / alpha
    return np.where(r < n_c, a * np.exp(-alpha * r), 2 * u * a - a * np.exp(-alpha * (2 * n_c - r)))


def channel_l1(pruner: TorchPruner) -> dict[int, np.ndarray]:
    """Per prunable group: each channel's L1 norm over all its weight slices."""
    return create_importance("l1").scores(pruner, ImportanceContext())


class ChannelPenalty:
    """Per-channel L2 coefficients on every learnable slice of the channel."""

    def __init__(self, pruner: TorchPruner):
        self.pruner = pruner
        self.terms: list[tuple[nn.Parameter, torch.Tensor]] = []

    def build(self, lams: dict[int, np.ndarray]) -> None:
        """(Re)build the coefficient tensors from ``lams`` ({group id: lambda per channel})."""
        params = dict(self.pruner.model.named_parameters())
        vectors: dict[tuple[str, int], np.ndarray] = {}
        for gid, lam in lams.items():
            group = self.pruner.groups[gid]
            for m in group.members:
                if m.kind in _SKIP_KINDS or m.tensor not in params:
                    continue
                v = vectors.setdefault((m.tensor, m.axis), np.zeros(params[m.tensor].shape[m.axis]))
                v[m.indices(range(group.width))] += np.repeat(lam, m.block)
        self.terms = []
        for (name, axis), v in vectors.items():
            p = params[name]
            shape = [1] * p.dim()
            shape[axis] = -1
            self.terms.append((p, torch.as_tensor(v, dtype=p.dtype, device=p.device).reshape(shape)))

    def apply(self) -> None:
        """grad += lambda * w for every penalised slice (the gradient of lambda/2 ||w||^2)."""
        with torch.no_grad():
            for p, coef in self.terms:
                if p.grad is not None:
                    p.grad.add_(p * coef)


class RegSchedule(Callback):
    """What IncReg and GReg share: penalties applied after backward, an update every
    ``interval`` iterations (``update``), removal by masks and slimming, the safety stop."""

    def __init__(self, ctx: PruneContext, live: LiveChannels, plan: dict[int, int], *, interval: int,
                 slim_every: int, max_iterations: int, name: str):
        self.ctx, self.live, self.name = ctx, live, name
        self.left = dict(plan)  # channels still to remove per group
        self.planned = sum(plan.values())
        self.lam = {gid: np.zeros(len(live.alive[gid])) for gid in plan}
        self.penalty = ChannelPenalty(ctx.pruner)
        self.interval, self.slim_every, self.max_iterations = interval, slim_every, max_iterations
        self.iteration = 0
        self.done = False
        self.forced = False

    # -- hooks -----------------------------------------------------------------------
    def on_after_backward(self, state: TrainState) -> None:
        self.penalty.apply()

    def on_step_end(self, state: TrainState) -> None:
        self.iteration += 1
        if self.done:
            return
        if self.iteration >= self.max_iterations:
            self.forced = True
            self.finish(state, force=True)
        elif self.iteration % self.interval == 0:
            self.update(state)
            if not self.done:
                self.penalty.build(self.lam)

    def on_train_end(self, state: TrainState) -> None:
        if not self.done:
            self.forced = True
            self.finish(state, force=True)

    def update(self, state: TrainState) -> None:
        raise NotImplementedError

    def status(self) -> str:
        """How far removal got, for the progress lines."""
        left = sum(self.left.values())
        return f"{self.planned - left} of {self.planned} channels removed"

    # -- removal ---------------------------------------------------------------------
    def alive_l1(self) -> dict[int, np.ndarray]:
        """L1 norms of the channels (current indexing; dead channels at +inf)."""
        l1 = channel_l1(self.ctx.pruner)
        return {gid: np.where(self.live.alive[gid], l1[gid], np.inf) for gid in self.lam}

    def kill(self, gid: int, idx: np.ndarray) -> None:
        idx = np.asarray(idx, dtype=np.int64)[: self.left[gid]]
        if len(idx):
            self.live.kill(gid, idx)
            self.left[gid] -= len(idx)

    def maybe_slim(self, state: TrainState) -> None:
        if self.slim_every and self.live.dead_count() >= self.slim_every:
            self.slim(state)

    def slim(self, state: TrainState) -> None:
        stayed = self.live.slim(state, **self.record())
        for gid, keep in stayed.items():
            if gid in self.lam:
                self.lam[gid] = self.lam[gid][keep]
                self.on_slim(gid, keep)

    def on_slim(self, gid: int, keep: np.ndarray) -> None:
        """Slice per-channel state of subclasses like ``lam``."""

    def finish(self, state: TrainState, *, force: bool = False) -> None:
        if force:  # out of iterations: remove what is left at once
            for gid in self.lam:
                self.kill(gid, self.forced_choice(gid))
        self.slim(state)
        self.live.close()
        self.penalty.terms = []
        self.done = True
        state.stop = True

    def forced_choice(self, gid: int) -> np.ndarray:
        """Alive channels of ``gid`` in the order a forced finish removes them: highest penalty first."""
        alive = np.flatnonzero(self.live.alive[gid])
        return alive[np.argsort(-self.lam[gid][alive], kind="stable")]

    def record(self) -> dict[str, Any]:
        return {"method": self.name, "iteration": self.iteration, "forced": self.forced}


class IncRegSchedule(RegSchedule):
    """Every ``interval`` iterations: rank by L1, average the ranks, grow lambda by rank."""

    def __init__(self, ctx, live, plan, *, u: float, a: float, target: float, **kw):
        super().__init__(ctx, live, plan, **kw)
        self.u, self.a, self.target = u, a, target
        self.mean_rank = {gid: np.zeros(len(v)) for gid, v in self.lam.items()}
        self.rankings = {gid: 0 for gid in self.lam}

    def update(self, state: TrainState) -> None:
        l1 = self.alive_l1()
        for gid in self.lam:
            if self.left[gid] > 0:
                self._update_group(gid, l1[gid])
        if all(v == 0 for v in self.left.values()):
            self.finish(state)
        else:
            self.maybe_slim(state)

    def _update_group(self, gid: int, l1: np.ndarray) -> None:
        alive = np.flatnonzero(self.live.alive[gid])
        rank = np.argsort(np.argsort(l1[alive], kind="stable"), kind="stable")
        self.rankings[gid] += 1
        mean = self.mean_rank[gid]
        mean[alive] += (rank - mean[alive]) / self.rankings[gid]
        order = np.lexsort((rank, mean[alive]))  # by average rank, ties by the current rank
        position = np.empty(len(alive), dtype=np.int64)
        position[order] = np.arange(len(alive))
        lam = self.lam[gid]
        lam[alive] = np.maximum(lam[alive] + increg_delta(position, self.left[gid], self.u, self.a), 0.0)
        reached = alive[lam[alive] >= self.target]
        self.kill(gid, reached[np.argsort(-lam[reached], kind="stable")])

    def on_slim(self, gid: int, keep: np.ndarray) -> None:
        self.mean_rank[gid] = self.mean_rank[gid][keep]


class GRegSchedule(RegSchedule):
    """GReg-1 (``pick_delta`` = 0) and GReg-2: grow, stabilise, remove the picked channels."""

    def __init__(self, ctx, live, plan, *, delta: float, ceiling: float, stabilize: int, mag_ratio: float,
                 pick_delta: float = 0.0, pick_ceiling: float = 0.0, recover: float = 0.0, **kw):
        super().__init__(ctx, live, plan, **kw)
        self.delta, self.ceiling, self.stabilize, self.mag_ratio = delta, ceiling, stabilize, mag_ratio
        self.pick_delta, self.pick_ceiling, self.recover = pick_delta, pick_ceiling, recover
        self.picked: dict[int, np.ndarray] = {}
        self.phase = "pick" if pick_delta > 0 else "grow"
        self.stable_since = 0
        if self.phase == "grow":
            self._pick(recover=0.0)

    def _pick(self, recover: float) -> None:
        """The N_prune lowest-L1 channels of each group; the others' lambda set to ``recover``."""
        l1 = self.alive_l1()
        for gid, n in self.left.items():
            self.picked[gid] = np.sort(np.argsort(l1[gid], kind="stable")[:n])
            kept = np.setdiff1d(np.arange(len(self.lam[gid])), self.picked[gid])
            self.lam[gid][kept] = recover

    def update(self, state: TrainState) -> None:
        if self.phase == "pick":
            for lam in self.lam.values():
                lam += self.pick_delta
            if max((lam.max(initial=0.0) for lam in self.lam.values()), default=0.0) >= self.pick_ceiling:
                self._pick(self.recover)
                self.phase = "grow"
        elif self.phase == "grow":
            for gid, idx in self.picked.items():
                self.lam[gid][idx] = np.minimum(self.lam[gid][idx] + self.delta, self.ceiling)
            if self._grown():
                self.phase, self.stable_since = "stabilize", self.iteration
        if self.phase == "stabilize" and self.iteration - self.stable_since >= self.stabilize:
            for gid, idx in self.picked.items():
                self.kill(gid, idx)
            self.finish(state)

    def status(self) -> str:
        return f"{self.phase}, {super().status()}"

    def forced_choice(self, gid: int) -> np.ndarray:
        if not self.picked:
            self._pick(self.recover)
        return self.picked[gid]

    def _grown(self) -> bool:
        """Lambda at the ceiling, or the picked channels' mean L1 ``mag_ratio`` x below the kept."""
        if all(lam[self.picked[gid]].min(initial=self.ceiling) >= self.ceiling for gid, lam in self.lam.items()):
            return True
        if self.mag_ratio <= 0:
            return False
        l1 = self.alive_l1()
        for gid, idx in self.picked.items():
            kept = np.setdiff1d(np.arange(len(l1[gid])), idx)
            if len(idx) and len(kept) and l1[gid][kept].mean() < self.mag_ratio * l1[gid][idx].mean():
                return False
        return True


# -- the methods ------------------------------------------------------------------------
_COMMON = {
    **phase_params(10.0),
    "slim_every": Param(32, "slice removed channels out physically once this many are masked (0: at the end)"),
}
INCREG_SPAN = 6.0  # schedule=fit: target / A rankings in a phase, times this, remove every planned channel
GREG_SHARES = {"greg1": (0.0, 0.6, 0.4), "greg2": (0.1, 0.5, 0.4)}  # pick, grow, stabilise


def _reg_params(weight_decay: float, decay_note: str, at_cap: str) -> dict[str, Param]:
    """What every regularising method takes after its own parameters: the learning rate and
    weight decay while regularising, the iteration cap (``at_cap``: what happens there) and
    the phase's."""
    return {
        "lr_scale": Param(0.1, "learning rate while regularising, as a multiple of the fine-tuning --lr"),
        "weight_decay": Param(weight_decay, f"weight decay while regularising{decay_note}"),
        "max_iterations": Param(200000, f"safety: after this many iterations {at_cap}"),
        **_COMMON,
    }


def plan(ctx: PruneContext) -> dict[int, int]:
    """Channels each prunable group loses under the build's budget and allocation (by L1);
    any budget ``ctx.keep_for`` allocates, so the method follows the build's budgets."""
    keep = ctx.keep_for(ctx.request.budget, channel_l1(ctx.pruner))
    widths = ctx.pruner.widths()
    return {g.id: int(widths[g.id] - keep[g.id]) for g in ctx.pruner.prunable if widths[g.id] > keep[g.id]}


class _RegMethod(PruneMethod):
    needs_training_data = True
    """Runs a :class:`RegSchedule` subclass in a training phase until it removed its plan."""

    def __init__(self, **values: Any):
        super().__init__(**values)
        self.fitted: dict[str, Any] = {}  # schedule=fit's derived values (explicit parameters win)

    def setting(self, name: str) -> Any:
        """A parameter: given explicitly, else derived by schedule=fit, else its default."""
        return self.values[name] if name in self.values else self.fitted.get(name, self.param(name))

    def schedule(self, ctx: PruneContext, live: LiveChannels, plan: dict[int, int]) -> RegSchedule:
        raise NotImplementedError

    def fit_to(self, ctx: PruneContext, steps: int) -> tuple[dict[str, Any], str]:
        """schedule=fit: the values that reach the target within ``steps``, and what they mean."""
        raise NotImplementedError

    def paper_steps(self) -> tuple[int, str]:
        """schedule=paper: the iterations the paper's increments take, and what they mean."""
        raise NotImplementedError

    def run(self, ctx: PruneContext) -> None:
        """Plan the channels to remove, announce the phase, and train with the penalties
        until the plan is removed (the task loss unless loss=distill)."""
        for key in ("interval", "max_iterations"):
            if int(self.param(key)) < 1:
                raise InputError(f"{self.name}'s {key} must be at least 1, got {self.param(key)}")
        check_schedule(str(self.param("schedule")), float(self.param("prune_epochs")), self.name)
        todo = plan(ctx)  # the allocation refuses an unreachable budget (BudgetError)
        if not todo:
            return
        require_data(ctx, self.name)
        loss = str(self.param("loss"))
        teacher = phase_teacher(ctx, loss, self.name)
        phase = self._phase(ctx, sum(todo.values()))
        live = LiveChannels(ctx)
        try:
            schedule = self.schedule(ctx, live, todo)
            phase.announce()
            ctx.losses["scoring"] = "L1 norms of the weights (no loss)"
            ctx.losses["prune_training"] = f"{loss_description(ctx, loss)} + per-channel L2 penalties"
            progress = PhaseProgress(phase, schedule.status)
            epochs = phase.fit_epochs() if phase.schedule == "fit" else \
                math.ceil(int(self.setting("max_iterations")) / phase.steps_per_epoch)
            train_phase(ctx, [schedule, progress], lr_scale=float(self.setting("lr_scale")), epochs=epochs,
                        teacher=teacher, weight_decay=float(self.setting("weight_decay")), name=self.name)
        finally:
            live.close()

    def _phase(self, ctx: PruneContext, channels: int) -> Phase:
        """The plan of the phase; under schedule=fit also the derived values (``fitted``)."""
        kind = str(self.param("schedule"))
        if kind == "fit":
            steps = budget_steps(ctx, float(self.param("prune_epochs")))
            self.fitted, detail = self.fit_to(ctx, steps)
        else:
            steps, detail = self.paper_steps()
        return plan_phase(ctx, self.name, kind, steps, f"{channels} channels; {detail}")

    def _common(self) -> dict[str, Any]:
        return {"interval": int(self.setting("interval")), "slim_every": max(0, int(self.setting("slim_every"))),
                "max_iterations": int(self.setting("max_iterations")), "name": self.name}


@METHODS.register("increg")
class IncReg(_RegMethod):
    name = "increg"
    description = ("IncReg (Wang et al. 2018): per-channel L2 penalties that grow by running L1 rank; "
                   "a channel is removed when its penalty reaches the target")
    params = {
        "interval": Param(1, "iterations between two rankings and penalty updates (k)"),
        "u": Param(0.25, "u of the increment formula"),
        "A": Param(2.5e-4, "largest increment per update (A)"),
        "target": Param(2.5, "penalty at which a channel is removed (paper: 1e4 * A)"),
        **_reg_params(2.5e-4, " (paper: 2.5e-4)", "remove the rest at once"),
    }

    def schedule(self, ctx, live, plan):
        u, a, target = float(self.setting("u")), float(self.setting("A")), float(self.setting("target"))
        if not (0 < u < 0.5 and a > 0 and target > 0):
            raise InputError(f"increg needs 0 < u < 0.5 and positive A and target, got u={u}, A={a}, "
                             f"target={target}")
        return IncRegSchedule(ctx, live, plan, u=u, a=a, target=target, **self._common())

    def fit_to(self, ctx, steps):
        interval = int(self.setting("interval"))
        updates = max(1, steps // interval)
        a = float(self.setting("target")) * INCREG_SPAN / updates
        return {"A": a}, f"{updates} penalty updates, one every {interval} iterations, A = {a:.3g}"

    def paper_steps(self):
        rankings = float(self.param("target")) / float(self.param("A"))
        interval = int(self.param("interval"))
        return (math.ceil(5.3 * rankings * interval),
                f"first removal after {rankings:,.0f} rankings (one every {interval} iterations), "
                "the last typically by 5.3x that")


@METHODS.register("greg1")
class GReg1(_RegMethod):
    name = "greg1"
    description = ("GReg-1 (Wang et al. 2021): pick the lowest-L1 channels, grow their L2 penalty to a "
                   "ceiling, stabilise, remove")
    params = {
        "interval": Param(5, "iterations between two penalty increments"),
        "delta": Param(1e-4, "penalty increment of the picked channels"),
        "ceiling": Param(1.0, "penalty at which growing stops"),
        "stabilize": Param(40000, "iterations of training at the ceiling before removal"),
        "mag_ratio": Param(1000.0, "stop growing once kept channels' mean L1 is this many times the picked' "
                                   "(0: off)"),
        **_reg_params(5e-4, "", "remove the picked channels"),
    }

    def _greg(self) -> dict[str, Any]:
        return {"delta": float(self.setting("delta")), "ceiling": float(self.setting("ceiling")),
                "stabilize": int(self.setting("stabilize")), "mag_ratio": float(self.setting("mag_ratio")),
                **self._common()}

    def schedule(self, ctx, live, plan):
        return GRegSchedule(ctx, live, plan, **self._greg())

    def fit_to(self, ctx, steps):
        pick, grow, stabilize = (max(1, math.floor(share * steps)) if share else 0
                                 for share in GREG_SHARES[self.name])
        out: dict[str, Any] = {"interval": 1, "delta": float(self.setting("ceiling")) / grow, "stabilize": stabilize}
        if pick:
            out["pick_delta"] = float(self.setting("pick_ceiling")) / pick
        return out, (f"{pick} iterations of uniform growth, " if pick else "") + \
            f"{grow} growing the picked channels' penalty, {stabilize} stabilising"

    def paper_steps(self):
        interval = int(self.param("interval"))
        grow = interval * math.ceil(float(self.param("ceiling")) / float(self.param("delta")))
        pick = interval * math.ceil(float(self.param("pick_ceiling")) / float(self.param("pick_delta"))) \
            if "pick_delta" in self.params else 0
        stabilize = int(self.param("stabilize"))
        return pick + grow + stabilize, (f"{pick} iterations of uniform growth, " if pick else "") + \
            f"{grow} growing the picked channels' penalty, {stabilize} stabilising"


@METHODS.register("greg2")
class GReg2(GReg1):
    name = "greg2"
    description = ("GReg-2 (Wang et al. 2021): a uniform growing penalty first separates magnitudes, then "
                   "GReg-1 on the lowest-L1 channels")
    params = {
        **GReg1.params,
        "pick_delta": Param(1e-5, "uniform penalty increment before picking"),
        "pick_ceiling": Param(1e-2, "uniform penalty at which the channels are picked"),
        "recover": Param(-1e-4, "penalty of the kept channels after picking"),
    }

    def schedule(self, ctx, live, plan):
        pick_delta = float(self.setting("pick_delta"))
        if pick_delta <= 0:
            raise InputError(f"greg2's pick_delta must be positive, got {pick_delta}", hint="or use greg1")
        return GRegSchedule(ctx, live, plan, pick_delta=pick_delta, pick_ceiling=float(self.setting("pick_ceiling")),
                            recover=float(self.setting("recover")), **self._greg())
