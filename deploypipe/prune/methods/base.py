"""The pruning-method contract: a method receives a :class:`PruneContext` and removes
channels through ``ctx.prune(drop)``, training on ``ctx.data`` if it prunes while it
trains. ``build`` then fine-tunes (unless the method says it already did), exports and
verifies. Each method declares its hyperparameters with defaults and descriptions.
"""
from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..._registry import Registry
from ...errors import InputError
from ...utils.log import get_logger
from ..allocate import floors, select_drop
from ..budget import ALL_BUDGETS, Budget, allocate
from ..state import GroupState
from ..importance import ImportanceContext, check_allocation, create_importance
from ..torch_groups import TorchPruner

log = get_logger("prune")
METHODS: Registry[type["PruneMethod"]] = Registry("pruning method")


@dataclass(frozen=True)
class Param:
    default: Any
    help: str


@dataclass(frozen=True)
class PruneRequest:
    budget: Budget
    importance: str = "l1"
    allocation: str = "uniform"
    round_to: int = 1
    max_ratio: float = 0.9
    calibration_batches: int = 8
    seed: int = 0
    params: dict[str, Any] = field(default_factory=dict)  # method hyperparameters (--method-arg k=v)

    def __post_init__(self) -> None:
        check_allocation(self.allocation, self.importance)


@dataclass
class PruneContext:
    """Everything a method may use, and the record of what it removed."""

    pruner: TorchPruner
    request: PruneRequest
    data: Any = None  # DataSplits
    train_config: Any = None  # TrainConfig of the fine-tuning phase
    teacher: nn.Module | None = None
    kept: dict[int, np.ndarray] = field(default_factory=dict)  # dense channel indices still alive
    rounds: list[dict] = field(default_factory=list)
    on_round: Callable[["PruneContext", dict], None] | None = None
    verify: bool = False  # check each removal against ONNX surgery of the same model (oracle)
    oracle: dict | None = None  # worst oracle result over the rounds
    out_dir: Path | None = None  # the run directory, for methods that write files of their own (fbs)
    planned: np.ndarray | None = None  # widths a measured latency plan fixed (latency budgets)
    losses: dict[str, str] = field(default_factory=dict)  # phase -> the loss it scored or trained with
    recalibration: dict | None = None  # the BatchNorm re-estimate after pruning (pipeline.build.recalibrate)

    def __post_init__(self) -> None:
        self.dense_widths = self.pruner.widths().copy()
        self.dense_reasons = {g.id: self.pruner.reasons(g) for g in self.pruner.groups}
        self.dense_cost = self.pruner.analysis.cost
        self.dense_macs = float(self.pruner.analysis.macs)
        self.dense_params = float(self.pruner.analysis.params)
        if not self.kept:
            self.kept = {g.id: np.arange(g.width) for g in self.pruner.groups}

    @property
    def model(self) -> nn.Module:
        return self.pruner.model

    def state(self, scores: dict[int, np.ndarray] | None = None) -> GroupState:
        """The current groups as one value: widths, ``scores`` (zeros where none), the dense
        widths and cost model, and the latency plan's widths."""
        groups, scores = self.pruner.groups, scores or {}
        prunable = [self.pruner.is_prunable(g) for g in groups]
        return GroupState(self.pruner.widths(), [scores.get(g.id, np.zeros(g.width)) for g in groups], prunable,
                          dense=self.dense_widths, cost=self.dense_cost, planned=self.planned,
                          frozen_by=tuple("" if p else (self.pruner.reasons(g) or [""])[0]
                                          for g, p in zip(groups, prunable)))

    # -- scoring and allocation ----------------------------------------------------
    def scores(self, importance: str | None = None) -> dict[int, np.ndarray]:
        """Per-channel scores of the current groups; in a distributed run computed once, on
        rank 0, and broadcast, so that every rank decides from the same numbers."""
        from ...train import on_rank_zero

        return on_rank_zero(self._scores, importance)

    def _scores(self, importance: str | None) -> dict[int, np.ndarray]:
        name = importance or self.request.importance
        criterion = create_importance(name)
        batches = self.calibration() if criterion.needs_data else ()
        self.losses.setdefault("scoring", f"{name}: task loss (cross-entropy) on calibration batches"
                               if criterion.needs_data else f"{name}: none, it reads the weights")
        ctx = ImportanceContext(batches=batches, rng=np.random.default_rng(self.request.seed + len(self.rounds)))
        return criterion.scores(self.pruner, ctx)

    def calibration(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        from torch.utils.data import DataLoader

        from ...data.splits import training_split

        train = training_split(self.data, f"importance {self.request.importance!r} scores channels by the loss on images",
                               hint="pass --dataset, or use a weight-only criterion (l1, l2, bn_scale)")
        gen = torch.Generator().manual_seed(self.request.seed)
        loader = DataLoader(train, batch_size=64, shuffle=True, generator=gen)
        return list(itertools.islice(loader, self.request.calibration_batches))

    def keep_for(self, budget: Budget, scores: dict[int, np.ndarray]) -> np.ndarray:
        """Kept widths (current groups) that meet ``budget`` measured on the dense model's scale
        (a latency budget: the measured plan's widths)."""
        return allocate(self.state(scores), budget, **self._allocation())

    def keep_toward(self, t: float, scores: dict[int, np.ndarray]) -> np.ndarray:
        """Kept widths ``t`` of the way (geometrically) from the dense model to the request's budget."""
        return self.request.budget.allocate_toward(self.state(scores), t, **self._allocation())

    def _allocation(self) -> dict[str, Any]:
        req = self.request
        return {"allocation": req.allocation, "round_to": req.round_to, "max_ratio": _cap(req.max_ratio, self)}

    def prune_to(self, budget: Budget, scores: dict[int, np.ndarray] | None = None) -> dict[int, np.ndarray]:
        scores = self.scores() if scores is None else scores
        return self.prune_widths(self.keep_for(budget, scores), scores)

    def prune_toward(self, t: float, scores: dict[int, np.ndarray] | None = None) -> dict[int, np.ndarray]:
        scores = self.scores() if scores is None else scores
        return self.prune_widths(self.keep_toward(t, scores), scores)

    def prune_widths(self, keep: np.ndarray, scores: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
        """Remove each group's lowest-scoring channels down to ``keep``."""
        drop = select_drop([scores.get(g.id, np.zeros(g.width)) for g in self.pruner.groups], keep)
        self.prune(drop)
        return drop

    # -- removal ----------------------------------------------------------------------
    def prune(self, drop: dict[int, np.ndarray], **record: Any) -> None:
        """Remove ``drop`` (current group ids and indices) and record the round.

        Every method removes channels here, so this is where a distributed run agrees:
        rank 0's ``drop`` is broadcast and every rank removes exactly those channels."""
        from ...train import agree

        drop = {int(g): np.asarray(i) for g, i in drop.items() if len(i)}
        drop = agree(drop, what="pruning decision", key=_drop_key)
        before = len(self.pruner.groups)
        reference = self._surgery_reference(drop) if self.verify else None
        for gid, idx in drop.items():
            self.kept[gid] = np.delete(self.kept[gid], idx)
        self.pruner.apply(drop)
        if reference is not None:
            self._check_oracle(reference)
        if len(self.pruner.groups) != before:  # group ids must stay stable across rounds
            raise InputError("pruning changed the model's group structure",
                             hint="this model cannot be pruned iteratively; use one-shot pruning")
        a = self.pruner.analysis
        entry = {"round": len(self.rounds) + 1, "channels_removed": int(sum(len(v) for v in drop.values())),
                 "macs": a.macs, "params": a.params, **record}
        self.rounds.append(entry)
        if self.on_round:
            self.on_round(self, entry)

    def _surgery_reference(self, drop: dict[int, np.ndarray]):
        """The ONNX graph of the current model (fresh weights) shrunk by ``drop``."""
        from ...graph import analyse, shrink
        from ..torch_groups import export_model

        current = analyse(export_model(self.model, self.pruner.input_shape))
        return shrink(current, drop)

    def _check_oracle(self, reference) -> None:
        """Torch-pruned model == ONNX-shrunk model, on random inputs."""
        from ...graph.oracle import compare, random_feeds, run_onnx
        from ..torch_groups import evaluation

        feeds = random_feeds(reference, batch=2, seed=len(self.rounds))
        with evaluation(self.model), torch.no_grad():
            ours = self.model(torch.from_numpy(next(iter(feeds.values()))))
        report = compare(run_onnx(reference, feeds), [ours.numpy()], atol=1e-4, rtol=1e-4)
        if self.oracle is None or report.max_abs >= self.oracle["max_abs"]:
            self.oracle = {**report.to_dict(), "passed": report.passed and (self.oracle or {}).get("passed", True)}
        elif not report.passed:
            self.oracle["passed"] = False

    def sum_over_ranks(self, stats: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
        """Per-group statistics (e.g. Fisher information from each rank's own batches) summed
        over the ranks of a distributed run, so that decisions taken from them agree on
        every rank; ``stats`` unchanged in a world of one. Every rank must call it."""
        from ...train import all_reduce_sum

        keys = sorted(stats)
        sizes = [np.asarray(stats[k]).size for k in keys]
        flat = all_reduce_sum(np.concatenate([np.ravel(stats[k]) for k in keys]) if keys else [])
        parts = np.split(flat, np.cumsum(sizes)[:-1]) if keys else []
        return {k: part.reshape(np.shape(stats[k])) for k, part in zip(keys, parts)}

    def finetune(self, epochs: int, *, callbacks=()) -> Any:
        """Train the current model ``epochs`` epochs with the build's fine-tuning config."""
        import dataclasses

        from ...train import fit

        if epochs <= 0 or self.data is None or not self.data.has_training or self.train_config is None:
            return None  # a test set alone is never trained on; deploypipe.prune() does not train
        config = dataclasses.replace(self.train_config, epochs=epochs)
        return fit(self.model, self.data, config, teacher=self.teacher, callbacks=callbacks)


def _drop_key(drop: dict[int, np.ndarray]) -> list[tuple[int, list[int]]]:
    """A drop dict as plain, ordered data, for comparing ranks' decisions."""
    return sorted((int(g), sorted(int(i) for i in idx)) for g, idx in drop.items())


def _cap(max_ratio: float, ctx: PruneContext) -> float:
    """The per-group cap relative to the *dense* widths (their :func:`floors`), expressed as
    one ratio of the current widths: the tightest over the prunable groups."""
    state = ctx.state()
    prunable = np.array(state.prunable, dtype=bool)
    floor = floors(state.dense, state.prunable, max_ratio)
    ratios = (1 - floor / np.maximum(state.widths, 1))[prunable]
    return float(np.clip(ratios.min(initial=max_ratio), 0.0, 0.99)) if len(ratios) else max_ratio


class PruneMethod:
    name = ""
    description = ""
    params: dict[str, Param] = {}
    finetunes = False  # True: the method's own training replaces build's fine-tuning
    needs_training_data = False  # True: it trains, scores or refits on training images itself
    budgets: tuple[type[Budget], ...] = ALL_BUDGETS  # the budget kinds it can meet

    @classmethod
    def check_budget(cls, budget: Budget) -> None:
        """Refuse, before any work (the latency table, training), a budget the method cannot meet."""
        if not isinstance(budget, cls.budgets):
            raise InputError(f"method {cls.name!r} cannot meet {budget.describe()}",
                             hint=f"with {cls.name} use {', '.join(b.flag for b in cls.budgets)}, or another method")

    def __init__(self, **values: Any):
        unknown = set(values) - set(self.params)
        if unknown:
            raise InputError(f"method {self.name!r} has no parameter {sorted(unknown)[0]!r}",
                             hint=f"its parameters are: {', '.join(self.params) or 'none'}")
        self.values = {k: _coerce(v, p.default) for k, v in values.items() for p in [self.params[k]]}

    def param(self, name: str) -> Any:
        return self.values.get(name, self.params[name].default)

    def run(self, ctx: PruneContext) -> None:
        raise NotImplementedError


def _coerce(value: Any, default: Any) -> Any:
    if isinstance(value, str) and default is not None and not isinstance(default, str):
        try:
            return type(default)(value) if not isinstance(default, bool) else value.lower() in ("1", "true", "yes")
        except ValueError:
            raise InputError(f"cannot read {value!r} as {type(default).__name__}", hint="check --method-arg") from None
    return value


def create_method(name: str, params: dict[str, Any] | None = None) -> PruneMethod:
    return METHODS.get(name)(**(params or {}))


def parse_method_args(items: list[str] | None) -> dict[str, str]:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"cannot read method argument {item!r}", hint="write KEY=VALUE, e.g. steps=3")
        out[key.strip().replace("-", "_")] = value.strip()
    return out


def copy_model(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model)
