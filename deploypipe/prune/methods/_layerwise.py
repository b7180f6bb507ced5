"""What layer-by-layer reconstruction pruning needs besides the least-squares algebra:
the order of the stages, the calibration set, and the dense model's outputs of every
consumer (the reconstruction targets), captured once at sampled positions.

Targets come from the *dense* model and inputs from the model as pruned so far (He et
al. 2017's choice): the refit of stage l then also corrects the error that stages < l left.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ...errors import InputError, InternalError
from ...graph import ChannelGroup
from ..reconstruction import output_rows, positions_for
from ..torch_groups import TorchPruner, evaluation
from .base import PruneContext

Batch = tuple[Tensor, Tensor]


def stage_order(pruner: TorchPruner) -> list[int]:
    """Prunable group ids from input to output: by the first ONNX node (graph order is
    topological) that reads one of the group's producer tensors."""
    first: dict[str, int] = {}
    for i, node in enumerate(pruner.analysis.model.graph.node):
        for name in node.input:
            first.setdefault(name, i)

    def position(g: ChannelGroup) -> int:
        members = g.by_role("producer") or list(g.members)
        return min((first.get(m.tensor, len(first)) for m in members), default=len(first))

    return [g.id for g in sorted(pruner.prunable, key=lambda g: (position(g), g.id))]


def calibration_batches(ctx: PruneContext, samples: int, batch_size: int = 32, *, name: str = "this method"
                        ) -> list[Batch]:
    """``samples`` training images in seeded random order, in batches."""
    from ...data.splits import training_split

    train = training_split(ctx.data, f"{name} refits each layer by least squares on images")
    gen = torch.Generator().manual_seed(ctx.request.seed)
    order = torch.randperm(len(train), generator=gen)[: max(1, min(samples, len(train)))]
    x, y = train[order]
    return [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(order), batch_size)]


def dense_reference(ctx: PruneContext) -> nn.Module:
    """A frozen copy of the model as it is now (the dense teacher when --distill made one)."""
    import copy

    model = ctx.teacher if ctx.teacher is not None else copy.deepcopy(ctx.model)
    return model.eval()


@dataclass
class DenseTargets:
    """Per consumer module name and batch: the sampled output positions and the dense
    layer's output rows there ([rows, dense outputs])."""

    positions: dict[str, list[Tensor | None]] = field(default_factory=dict)
    rows: dict[str, list[Tensor]] = field(default_factory=dict)

    @classmethod
    def capture(cls, dense: nn.Module, names: Sequence[str], batches: Sequence[Batch], count: int,
                seed: int) -> "DenseTargets":
        out = cls({n: [] for n in names}, {n: [] for n in names})
        modules = dict(dense.named_modules())
        gen = torch.Generator().manual_seed(seed)

        def hook(name: str):
            def fn(module: nn.Module, args, output: Tensor) -> None:
                pos = positions_for(module, output, count, gen)
                out.positions[name].append(pos)
                out.rows[name].append(output_rows(module, output.detach(), pos))
            return fn

        with forward_hooks({modules[n]: hook(n) for n in names}), evaluation(dense), torch.no_grad():
            for x, _ in batches:
                dense(x)
        return out


@contextlib.contextmanager
def forward_hooks(table: dict[nn.Module, object]) -> Iterator[None]:
    """Forward hooks on several modules for one block (removed afterwards)."""
    handles = [m.register_forward_hook(fn) for m, fn in table.items()]  # type: ignore[arg-type]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def dense_output_index(dense_groups: Sequence[ChannelGroup], kept: dict[int, np.ndarray], tensor: str,
                       width: int) -> np.ndarray:
    """Dense indices of the outputs ``tensor`` (a consumer's weight) still produces."""
    parts = [m.indices(kept[g.id]) for g in dense_groups for m in g.by_role("producer") if m.tensor == tensor]
    if not parts:
        return np.arange(width)
    index = np.sort(np.concatenate(parts))
    if len(index) != width:
        raise InternalError(f"{tensor} has {width} outputs but its groups keep {len(index)}")
    return index


def output_weights(pruner: TorchPruner, tensor: str, width: int, weight_of: dict[int, np.ndarray]) -> np.ndarray:
    """Per output of ``tensor`` (current indexing): the weight of the group channel it
    belongs to (``weight_of``; 1 where a group has none)."""
    out = np.ones(width)
    for g in pruner.groups:
        if g.id not in weight_of:
            continue
        for m in g.by_role("producer"):
            if m.tensor == tensor:
                out[m.indices(np.arange(g.width))] = np.repeat(weight_of[g.id], m.block)
    return out


def producer_groups(pruner: TorchPruner, tensor: str) -> list[int]:
    """Ids of the groups whose producer slices include ``tensor``."""
    return [g.id for g in pruner.groups if any(m.tensor == tensor for m in g.by_role("producer"))]
