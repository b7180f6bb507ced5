"""``deploypipe.prune(model, example_inputs, budget=...)``: pruning alone, in memory (no export,
fine-tuning or profiling), as Torch-Pruning's ``MetaPruner`` is called, on the channel groups
deploypipe's ONNX analysis finds. The package is callable (see ``deploypipe/prune/__init__.py``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import InputError
from ..python_terms import speaks_python

BUDGET_KINDS = ("ratio", "macs", "params", "latency")


def parse_budget(budget: Any):
    """``"macs:2x"``, ``"latency:0.6"`` (of dense), ``"latency:5ms"``, ``"ratio:0.3"``,
    ``"params:0.5"``, a bare ``"2x"`` (MACs), or a :class:`~deploypipe.prune.budget.Budget`."""
    from .budget import Budget

    if isinstance(budget, Budget):
        return budget
    kind, sep, value = str(budget).partition(":")
    if not sep:
        kind, value = "macs", kind
    if kind.strip() not in BUDGET_KINDS:
        raise InputError(f"budget {budget!r} names no budget kind",
                         hint=f"write KIND:VALUE with KIND one of {', '.join(BUDGET_KINDS)}, e.g. 'latency:0.6'")
    return Budget.parse(kind.strip(), value)


def input_shape(example_inputs: Any) -> tuple[int, int, int] | None:
    if example_inputs is None:
        return None
    shape = tuple(getattr(example_inputs, "shape", example_inputs))
    if len(shape) != 4 or not all(isinstance(s, int) and s > 0 for s in shape):
        raise InputError(f"example_inputs has shape {shape}, not (N, C, H, W)",
                         hint="pass one batch of images, e.g. torch.randn(1, 3, 32, 32)")
    return shape[1], shape[2], shape[3]



@dataclass(frozen=True)
class PruneResult:
    """A pruned copy of the model and what it cost: MACs and parameters before and after
    (counted on the exported graph), the widths of every channel group."""

    model: Any  # torch.nn.Module
    macs: tuple[float, float]
    params: tuple[float, float]
    widths: tuple[tuple[int, int], ...]  # (dense, pruned) per channel group

    @property
    def macs_reduction(self) -> float:
        return self.macs[0] / max(self.macs[1], 1.0)


@speaks_python()
def prune(model: Any, example_inputs: Any, *, budget: Any = "macs:2x", method: str = "oneshot",
          importance: str = "l1", allocation: str = "uniform", round_to: int = 1, max_ratio: float = 0.9,
          train_loader: Any = None, seed: int = 0, bn_batches: int = 20, **params: Any) -> PruneResult:
    """Pruning alone, in memory (no export, fine-tuning or profiling): a copy of ``model`` with
    whole channel groups removed to ``budget``, as Torch-Pruning's ``MetaPruner`` does, on the
    groups deploypipe's ONNX analysis finds. Data-driven criteria (``taylor``, ``fisher``) and
    methods that train read ``train_loader``; with one, the pruned copy's BatchNorm statistics
    are then re-estimated on ``bn_batches`` of its batches (0: kept), as ``build`` does.
    Latency budgets need a target: use :func:`build`."""
    import copy

    from .methods import PruneContext, PruneRequest, create_method
    from .torch_groups import TorchPruner

    from ..utils.checks import at_least, fraction

    at_least("round_to", round_to, 1)
    at_least("bn_batches", bn_batches, 0)
    fraction("max_ratio", max_ratio, hint="it is the most one group may lose, e.g. 0.9")
    shape = input_shape(example_inputs)
    if shape is None:
        raise InputError("prune needs example_inputs to trace the model", hint="pass e.g. torch.randn(1, 3, 32, 32)")
    parsed = parse_budget(budget)
    if parsed.needs_latency_table:
        raise InputError(f"a {parsed.describe()} budget is measured on a target, which prune() does not have",
                         hint="use deploypipe.build(..., target=...) for latency budgets")
    import torch

    if not isinstance(model, torch.nn.Module):
        raise InputError(f"model is a {type(model).__name__}, not an nn.Module",
                         hint="pass the torch.nn.Module to prune")
    net = copy.deepcopy(model).eval()
    pruner = TorchPruner(net, (1, *shape))
    dense = pruner.widths().copy()
    macs, params_before = float(pruner.analysis.macs), float(pruner.analysis.params)
    from ..data.user import splits_from_loaders

    data = splits_from_loaders(train_loader, None, shape) if train_loader is not None else None
    if data is not None:
        from ..train import check_model_on_data

        check_model_on_data(net, data)
    method_ = create_method(method, {k: str(v) for k, v in params.items()})
    method_.check_budget(parsed)
    request = PruneRequest(budget=parsed, importance=importance, allocation=allocation, round_to=round_to,
                           max_ratio=max_ratio, seed=seed, params=dict(params))
    method_.run(PruneContext(pruner, request, data=data))
    if data is not None and not method_.finetunes:
        from ..train.batchnorm import recalibrate_batchnorm

        recalibrate_batchnorm(net, data.train, batches=bn_batches, batch_size=_batch_size(train_loader), seed=seed)
    return PruneResult(net, (macs, float(pruner.analysis.macs)), (params_before, float(pruner.analysis.params)),
                       tuple((int(d), int(w)) for d, w in zip(dense, pruner.widths())))


def _batch_size(loader: Any) -> int:
    """The batch size the caller's loader uses (128 when it does not say)."""
    size = getattr(loader, "batch_size", None)
    return size if isinstance(size, int) and size > 1 else 128
