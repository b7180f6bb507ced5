"""What the methods that prune while they train share (Group Fisher, IncReg, GReg).

* **Budget on live widths**: ``budget_met`` measures the widths that are still alive in the
  budget's measure (group ids are stable across rounds, so the dense ``CostModel`` is exact
  for any widths); ``floors`` are the fewest channels a group may keep (``--max-ratio``,
  and one ``--round-to`` block). Latency budgets are not among the budgets these methods
  declare: a single channel has no measured price.
* **Removal in effect, slimming in batches** (:class:`LiveChannels`): a removed channel
  gets a 0 mask at every consumer, which is exactly removal (the masks oracle), and is
  sliced out physically through ``ctx.prune`` once ``slim_every`` channels are dead and at
  the end. Slimming re-exports and re-analyses the model (about 0.5 s for ResNet-56, 1 s
  more with the surgery oracle of ``--verify``), a few training steps on this CPU, so one
  export per removed channel would cost more than the training between removals; masks
  cost nothing and slimming every few dozen channels lets training speed up as it goes.
* **The training phase** (:func:`train_phase`): the build's training config at a fixed,
  scaled learning rate, run by ``fit`` until a callback sets ``state.stop``, with the loss
  the method asked for (the task loss unless ``loss=distill``, see :mod:`.phase`).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np
import torch

from ...errors import BudgetError, InputError
from ...train import Callback, TrainConfig, TrainResult, TrainState
from .. import allocate
from ..torch_groups import ConsumerMasks
from .base import PruneContext


# -- budgets ----------------------------------------------------------------------------
def budget_met(ctx: PruneContext, widths: np.ndarray, share: float = 1.0) -> bool:
    """Whether ``widths`` (all groups, dense group ids) make ``share`` of the way from the
    dense model to the request's budget (all of it by default), in the budget's measure."""
    return ctx.request.budget.met(ctx.state(), widths, share)


def floors(ctx: PruneContext) -> np.ndarray:
    """The fewest channels each group may keep (see :func:`deploypipe.prune.allocate.floors`),
    from its dense width."""
    state = ctx.state()
    return allocate.floors(state.dense, state.prunable, ctx.request.max_ratio, ctx.request.round_to)


def check_reachable(ctx: PruneContext, name: str) -> None:
    """Refuse, before any training, a budget that even the floors cannot meet."""
    if not budget_met(ctx, floors(ctx)):
        raise BudgetError(f"{name} cannot meet {ctx.request.budget.describe()}: every prunable group "
                          f"losing {ctx.request.max_ratio:.0%} of its channels is not enough",
                          hint="ask for less, or allow more with --max-ratio")


# -- training phase ---------------------------------------------------------------------
def require_data(ctx: PruneContext, name: str, trains: str = "prunes while it trains") -> None:
    """Refuse, in one sentence, a method that trains (``name`` ``trains``) without training
    images, or under ``deploypipe.prune()``, which has data but does not train."""
    from ...data.splits import training_split

    training_split(ctx.data, f"{name} {trains}")
    if ctx.train_config is None:  # data but no training config: deploypipe.prune()
        raise InputError(f"{name} {trains}, and deploypipe.prune() does not train",
                         hint="use deploypipe.build(..., train_loader=...) for it")


def train_phase(ctx: PruneContext, callbacks: Sequence[Callback], *, lr_scale: float, epochs: int,
                teacher: Any = None, weight_decay: float | None = None, name: str = "this method") -> TrainResult:
    """Train with ``callbacks`` at ``lr_scale`` times the fine-tuning rate (constant) for at
    most ``epochs`` epochs, distilling from ``teacher`` if one is given (the task loss
    otherwise); a callback ends it earlier with ``state.stop``."""
    from ...train import fit

    require_data(ctx, name)
    base: TrainConfig = ctx.train_config
    config = dataclasses.replace(base, epochs=max(1, int(epochs)), lr=base.lr * lr_scale, schedule="constant",
                                 warmup_epochs=0.0, distill=base.distill if teacher is not None else None,
                                 weight_decay=base.weight_decay if weight_decay is None else weight_decay)
    return fit(ctx.model, ctx.data, config, teacher=teacher, callbacks=callbacks)


# -- removal in effect, slimming in batches ---------------------------------------------
class LiveChannels:
    """Which channels of each prunable group are alive (current indexing), with 0 masks at
    the consumers of the dead ones; ``slim`` removes the dead physically via ``ctx.prune``."""

    def __init__(self, ctx: PruneContext, *, per_sample: bool = False):
        self.ctx = ctx
        self.per_sample = per_sample
        self.alive: dict[int, np.ndarray] = {}
        self.killed: dict[int, list[int]] = {}  # kill order since the last slim (for revival)
        self.masks: ConsumerMasks | None = None
        self._reset()

    def _reset(self) -> None:
        groups = [g for g in self.ctx.pruner.groups if self.ctx.pruner.is_prunable(g)]
        self.alive = {g.id: np.ones(g.width, dtype=bool) for g in groups}
        self.killed = {g.id: [] for g in groups}
        self.masks = ConsumerMasks(self.ctx.pruner, groups, per_sample=self.per_sample).__enter__()

    # -- queries ---------------------------------------------------------------------
    def widths(self) -> np.ndarray:
        """Alive channels per group (all groups; frozen ones at their width)."""
        out = self.ctx.pruner.widths().astype(np.int64).copy()
        for gid, alive in self.alive.items():
            out[gid] = int(alive.sum())
        return out

    def dead_count(self, keep_recent: int = 0) -> int:
        """Dead channels, less the ``keep_recent`` per group that a slim would keep masked."""
        return int(sum(max(0, len(k) - keep_recent) for k in self.killed.values()))

    # -- edits -----------------------------------------------------------------------
    def kill(self, gid: int, idx: Sequence[int] | np.ndarray) -> None:
        idx = [int(i) for i in np.atleast_1d(idx) if self.alive[gid][int(i)]]
        self.alive[gid][idx] = False
        self.killed[gid].extend(idx)
        self._sync(gid)

    def revive(self, gid: int, count: int) -> None:
        """Bring back the ``count`` channels killed last in group ``gid`` (since the last slim)."""
        for _ in range(count):
            self.alive[gid][self.killed[gid].pop()] = True
        self._sync(gid)

    def _sync(self, gid: int) -> None:
        assert self.masks is not None
        self.masks.set(gid, torch.from_numpy(self.alive[gid].astype(np.float32)))
        self.masks.begin()

    # -- the masks' per-step protocol ------------------------------------------------
    def begin(self, batch: int | None = None) -> None:
        """Fresh mask leaves: per sample for a training batch, shared (any batch) otherwise."""
        assert self.masks is not None
        self.masks.begin(batch)

    def grads(self) -> dict[int, torch.Tensor]:
        assert self.masks is not None
        return self.masks.grads()

    # -- physical removal ------------------------------------------------------------
    def slim(self, state: TrainState | None = None, *, keep_recent: int = 0, **record: Any) -> dict[int, np.ndarray]:
        """Slice the dead channels out (one ``ctx.prune`` round) and return, per group, the
        boolean array of the channels that stayed, for callers that index by channel.

        The ``keep_recent`` channels killed last in each group stay in the model, masked and
        revivable, so a later rounding up to a channel multiple remains possible."""
        stayed, recent = {}, {}
        for gid, alive in self.alive.items():
            recent[gid] = self.killed[gid][len(self.killed[gid]) - keep_recent:] if keep_recent else []
            stayed[gid] = alive.copy()
            stayed[gid][recent[gid]] = True
        drop = {gid: np.flatnonzero(~s) for gid, s in stayed.items() if (~s).any()}
        self.close()  # hooks must not be traced into the export
        if drop:
            self.ctx.prune(drop, **record)
            if state is not None:
                state.rebuild_optimizer()
        self._reset()
        for gid, channels in recent.items():
            if channels:
                new_index = np.cumsum(stayed[gid]) - 1
                self.kill(gid, new_index[channels])
        return stayed

    def close(self) -> None:
        if self.masks is not None:
            self.masks.__exit__(None, None, None)
            self.masks = None
