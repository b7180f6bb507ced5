"""CPLI: channel pruning guided by classification loss and feature importance (Guo et al.,
AAAI 2020), on channel groups. There is no public code; this is our reading of the abstract
(``../shared/METHODS.md``), the first open implementation.

The reading implemented here:

* **Layer by layer, input to output.** Stages are the prunable channel groups in ONNX
  graph order. How many channels each group keeps is decided once, up front, by the
  build's allocation (``--allocation``, ``--importance``, ``--round-to``; any budget kind);
  CPLI decides *which* channels, and refits.
* **Objective of stage l.** For the group's consumers (the layers reading its channels),
  the reconstruction error of their outputs on a calibration set, after refitting them
  from the kept channels, plus ``lam`` times the increase of the classification loss when
  a channel goes, measured on the model as pruned so far through the consumer masks m_c.
  ``loss=fisher`` (default) takes the second-order estimate sum_n (dL_n/dm_c)^2 (the
  Group Fisher score); ``loss=taylor`` the abstract's first-order |sum_n dL_n/dm_c|.
  Both terms are normalised to be unitless: each consumer's error by its (weighted)
  target energy, averaged over the consumers; the loss scores by their sum over the
  group. ``lam = 1`` weighs them alike; the default ``lam = 0`` lets the loss guide the
  selection only through feature importance (below). Measured on CIFAR-10 (resnet20,
  256 calibration images, widths x8), test error before fine-tuning at 2x / 3x fewer
  MACs: Taylor ``lam=1`` 30.5% / 37.5%, Fisher ``lam=1`` 24.9% / 35.8%, ``lam=0`` 24.2% /
  31.8% (``tools/bench_cpli_ablation.py``): near a trained model's minimum the first-order
  sum is mostly noise, and even the Fisher term, weighed alike, chose worse than the
  reconstruction alone.
* **Targets**: the *dense* model's outputs of each consumer (He et al. 2017), inputs from
  the model pruned so far, so a refit also corrects the error earlier stages left.
* **Feature importance.** A consumer's output channels belong to a later group (stage
  l+1). Those that stage will remove need not be reconstructed: the output channels
  outside the top-k of the later group's loss score (k = the width the allocation gives
  it) count ``suppress`` (default 0.1) in the error, the others 1. Outputs of groups
  already pruned, frozen, or not pruned count 1. Weights change the selection only; the
  least-squares solution of each output is independent of its weight.
* **Selection: greedy backward elimination**, no LASSO: remove the channel whose removal
  raises the objective least, with the refit accounted for in closed form (Optimal Brain
  Surgeon's group downdate, :mod:`deploypipe.prune.greedy`), ``steps`` rounds per group.
  ``select=importance`` skips it and removes the channels the build's ``--importance``
  ranks lowest (the refit still runs): magnitude selection with a least-squares refit.
* **Refit**: ridge least squares of each consumer's weights (and bias) on the kept
  channels, the ridge pulling towards the current weights
  (:mod:`deploypipe.prune.reconstruction`). Conv2d (groups = 1) and Linear consumers are
  refitted; grouped/depthwise convs and other consumers are sliced as plain removal (for a
  depthwise conv removal is already exact: its output channel goes too). A BatchNorm after
  a consumer is left as it is: the refit reconstructs the pre-BatchNorm output.
* ``build`` fine-tunes afterwards unless ``--epochs 0``; CPLI is meant to be useful without.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...errors import InputError
from ..allocate import select_drop
from ..greedy import Problem, greedy_removal, kept_columns
from ..reconstruction import LeastSquares, channel_columns, design_rows, refittable, weight_matrix, write_weight
from ..torch_groups import Consumer, ConsumerMasks, evaluation
from ._layerwise import (DenseTargets, calibration_batches, dense_output_index, dense_reference, forward_hooks,
                         output_weights, producer_groups, stage_order)
from .base import METHODS, Param, PruneContext, PruneMethod


@dataclass(frozen=True)
class Settings:
    lam: float = 0.0
    ridge: float = 1e-2
    suppress: float = 0.1
    steps: int = 32
    refit: bool = True
    select: str = "greedy"
    loss: str = "fisher"


@METHODS.register("cpli")
class CPLI(PruneMethod):
    name = "cpli"
    needs_training_data = True
    description = ("CPLI (Guo et al. 2020): group by group from the input, keep the channels that best "
                   "reconstruct the consumers' importance-weighted outputs (plus lam x the loss increase); "
                   "refit the consumers by ridge least squares")
    params = {"samples": Param(256, "calibration images"),
              "positions": Param(16, "output positions sampled per image and conv consumer (0: all)"),
              "lam": Param(0.0, "weight of the classification-loss term against reconstruction (1: alike)"),
              "ridge": Param(1e-2, "ridge strength, relative to the mean input energy; pulls to the current weights"),
              "suppress": Param(0.1, "weight of output channels that the next stage is predicted to remove"),
              "steps": Param(32, "greedy rescoring rounds per group (>= channels removed: one at a time)"),
              "refit": Param(True, "refit the consumers by least squares (false: plain removal)"),
              "select": Param("greedy", "which channels go: greedy (the objective above) or importance (the "
                                        "build's --importance criterion; the refit still runs)"),
              "loss": Param("fisher", "the loss term: fisher sum_n (dL_n/dm)^2 or taylor |sum_n dL_n/dm|")}

    def run(self, ctx: PruneContext) -> None:
        settings = Settings(float(self.param("lam")), float(self.param("ridge")), float(self.param("suppress")),
                            int(self.param("steps")), bool(self.param("refit")), str(self.param("select")),
                            str(self.param("loss")))
        if settings.select not in ("greedy", "importance"):
            raise InputError(f"cpli's select must be greedy or importance, not {settings.select!r}",
                             hint="e.g. --method-arg select=importance")
        if settings.loss not in ("fisher", "taylor"):
            raise InputError(f"cpli's loss must be fisher or taylor, not {settings.loss!r}",
                             hint="e.g. --method-arg loss=fisher")
        batches = calibration_batches(ctx, int(self.param("samples")), name="cpli")
        scores = ctx.scores()
        keep = ctx.keep_for(ctx.request.budget, scores)
        ctx.losses["allocation"] = ctx.losses.pop("scoring", "")
        loss = f"{settings.loss.capitalize()} of the task loss (cross-entropy)"
        ctx.losses["scoring"] = (f"reconstruction of the dense consumers' outputs + {settings.lam:g} x {loss}"
                                 if settings.lam else
                                 f"reconstruction of the dense consumers' outputs, weighted by the next stage's {loss}")
        dense_groups = list(ctx.pruner.groups)
        names = sorted({c.name for g in ctx.pruner.prunable for c in ctx.pruner.consumers(g)
                        if refittable(c.module)})
        targets = DenseTargets.capture(dense_reference(ctx), names, batches, int(self.param("positions")),
                                       ctx.request.seed)
        processed: set[int] = set()
        for gid in stage_order(ctx.pruner):
            width = int(ctx.pruner.groups[gid].width)
            if keep[gid] < width:
                stage = Stage(ctx, gid, keep, processed, settings)
                drop, record = stage.run(batches, targets, dense_groups, scores[gid])
                ctx.prune({gid: drop}, method="cpli", group=gid, **record)
            processed.add(gid)


class Stage:
    """One group: statistics and loss scores on the calibration set, selection (greedy, or by
    the build's importance), refit of the consumers (in place); returns the channels to drop."""

    def __init__(self, ctx: PruneContext, gid: int, keep: np.ndarray, processed: set[int], settings: Settings):
        self.ctx, self.gid, self.keep, self.settings = ctx, gid, keep, settings
        self.group = ctx.pruner.groups[gid]
        self.consumers = _single_consumers(ctx.pruner.consumers(self.group))
        tensors = [f"{c.name}.weight" for c in self.consumers]
        self.nexts = sorted({h for t in tensors for h in producer_groups(ctx.pruner, t)
                             if h != gid and h not in processed and ctx.pruner.is_prunable(ctx.pruner.groups[h])
                             and keep[h] < ctx.pruner.groups[h].width})

    def run(self, batches, targets: DenseTargets, dense_groups, scores: np.ndarray) -> tuple[np.ndarray, dict]:
        stats, grads = self._collect(batches, targets, dense_groups)
        loss = {h: np.abs(v) for h, v in grads.items()}
        weight_of = ({h: _predicted_keep(loss[h], int(self.keep[h]), self.settings.suppress) for h in self.nexts}
                     if self.settings.select == "greedy" else {})  # without loss scores every output counts 1
        problems = [self._problem(c, stats[c.name], weight_of) for c in self.consumers]
        s = self.settings
        count = int(self.group.width - self.keep[self.gid])
        if s.select == "importance":
            removed = select_drop([scores], [self.keep[self.gid]]).get(0, np.array([], dtype=int))
        else:
            extra = s.lam * loss[self.gid] / max(float(loss[self.gid].sum()), 1e-30)
            removed = greedy_removal(problems, self.group.width, count, extra, s.steps)
        plain, refit = self._refit(problems, removed)
        return np.sort(removed), {"consumers_refit": len(problems), "recon_error_plain": plain,
                                  "recon_error_refit": refit}

    def _problem(self, c: Consumer, stats: LeastSquares, weight_of: dict[int, np.ndarray]) -> Problem:
        out = c.module.weight.shape[0]
        return Problem(stats, channel_columns(c, self.group.width), weight_matrix(c.module),
                       output_weights(self.ctx.pruner, f"{c.name}.weight", out, weight_of), self.settings.ridge)

    def _refit(self, problems: Sequence[Problem], removed: np.ndarray) -> tuple[float, float]:
        """Relative weighted errors of plain removal and of the refit; writes the refit."""
        plain_sum = refit_sum = energy = 0.0
        for c, p in zip(self.consumers, problems):
            kept = kept_columns(p, removed)
            coef = p.stats.solve(kept, p.prior, self.settings.ridge)
            plain = np.zeros_like(p.prior)
            plain[kept] = p.prior[kept]
            plain_sum += p.stats.error(plain, p.weights)
            refit_sum += p.stats.error(coef, p.weights)
            energy += p.scale
            if self.settings.refit:
                write_weight(c.module, coef)
        return plain_sum / max(energy, 1e-30), refit_sum / max(energy, 1e-30)

    def _collect(self, batches, targets: DenseTargets, dense_groups):
        """Regression statistics per consumer and, per group (this and the next), sum_n dL_n/dm
        (taylor) or sum_n (dL_n/dm)^2 (fisher)."""
        pruner, model = self.ctx.pruner, self.ctx.model
        stats, index, hooks, current = {}, {}, {}, [0]
        for c in self.consumers:
            w = c.module.weight
            bias = c.module.bias is not None
            stats[c.name] = LeastSquares(w[0].numel() + int(bias), w.shape[0], bias)
            index[c.name] = torch.as_tensor(dense_output_index(dense_groups, self.ctx.kept, f"{c.name}.weight",
                                                               w.shape[0]))
            hooks[c.module] = _accumulate(c.name, stats[c.name], targets, index[c.name], current)
        groups = [self.group] + [pruner.groups[h] for h in self.nexts]
        grads = {g.id: np.zeros(g.width) for g in groups}
        fisher = self.settings.loss == "fisher"
        scored = self.settings.select == "greedy"  # select=importance: the loss scores cannot matter
        with evaluation(model), _frozen_params(model), ConsumerMasks(pruner, groups, per_sample=fisher) as masks, \
                forward_hooks(hooks):
            for b, (x, y) in enumerate(batches):
                current[0] = b
                masks.begin(len(x))
                if not scored:
                    with torch.no_grad():
                        model(x)
                    continue
                F.cross_entropy(model(x), y, reduction="sum").backward()
                for gid, grad in masks.grads().items():
                    g = grad.detach().double()
                    grads[gid] += (g ** 2).sum(0).numpy() if fisher else g.numpy()
        return stats, grads


def _accumulate(name: str, stats: LeastSquares, targets: DenseTargets, index: torch.Tensor, current: list[int]):
    def hook(module: nn.Module, args, output) -> None:
        b = current[0]
        rows = design_rows(module, args[0].detach(), targets.positions[name][b])
        stats.add(rows, targets.rows[name][b][:, index])
    return hook


def _single_consumers(consumers: Sequence[Consumer]) -> list[Consumer]:
    """Refittable consumers that read the group once (a module reading it at two offsets is
    sliced as plain removal)."""
    counts: dict[str, int] = {}
    for c in consumers:
        counts[c.name] = counts.get(c.name, 0) + 1
    return [c for c in consumers if counts[c.name] == 1 and refittable(c.module)]


def _predicted_keep(score: np.ndarray, keep: int, suppress: float) -> np.ndarray:
    """1 for the ``keep`` highest-scoring channels (the ones the later stage is predicted
    to keep), ``suppress`` for the rest."""
    out = np.full(len(score), float(suppress))
    out[np.argsort(-score, kind="stable")[:keep]] = 1.0
    return out


@contextlib.contextmanager
def _frozen_params(model: nn.Module) -> Iterator[None]:
    """No weight gradients (only the masks' are needed): a cheaper backward."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in flags:
            p.requires_grad_(f)
