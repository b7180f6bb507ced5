"""The callback protocol for methods that act during training (Group Fisher, IncReg, FBS):
hooks at fixed points of each step, an extra loss term, and a shared mutable state.

Order within one step: ``on_batch_begin`` -> forward -> loss + ``extra_loss`` -> backward
-> ``on_after_backward`` (gradients ready) -> optimizer step -> ``on_step_end``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

from torch import Tensor, nn
from torch.optim import Optimizer

from .loaders import wrap_model
from .schedule import LRSchedule

if TYPE_CHECKING:
    from .config import TrainConfig
    from .fit_loop import EpochRecord


class Callback:
    """Base class: every hook is a no-op; override the ones you need."""

    def on_train_begin(self, state: "TrainState") -> None: ...
    def on_epoch_begin(self, state: "TrainState") -> None: ...
    def on_batch_begin(self, state: "TrainState") -> None: ...

    def extra_loss(self, state: "TrainState") -> Tensor | None:
        """A term added to the loss before backward (e.g. a sparsity penalty), or None."""
        return None

    def on_after_backward(self, state: "TrainState") -> None: ...
    def on_step_end(self, state: "TrainState") -> None: ...
    def on_epoch_end(self, state: "TrainState") -> None: ...
    def on_train_end(self, state: "TrainState") -> None: ...


@dataclass
class TrainState:
    """What a callback may read and change. ``epoch`` is 0-based; ``step`` counts the
    optimizer steps taken so far; set ``stop = True`` to end training after this step."""

    model: nn.Module
    optimizer: Optimizer
    scheduler: LRSchedule
    config: "TrainConfig"
    make_optimizer: Callable[[nn.Module], Optimizer]
    net: nn.Module = field(init=False)
    epoch: int = 0
    step: int = 0
    inputs: Tensor | None = None
    targets: Tensor | None = None
    outputs: Tensor | None = None
    loss: Tensor | None = None
    stop: bool = False
    history: list["EpochRecord"] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.net = wrap_model(self.model)

    def rebuild_optimizer(self) -> Optimizer:
        """A fresh optimizer over the model's current parameters, for callbacks that replace
        modules; momentum of surviving parameters and the schedule position are kept."""
        old = self.optimizer
        new = self.make_optimizer(self.model)
        kept = {p for group in new.param_groups for p in group["params"]}
        for param, buf in old.state.items():
            if param in kept:
                new.state[param] = buf
        self.scheduler.apply(new, self.step)
        self.optimizer = new
        self.net = wrap_model(self.model)
        return new


class CallbackList:
    """Calls each hook on every callback, in the order given."""

    def __init__(self, callbacks: Sequence[Callback]):
        self.callbacks = list(callbacks)

    def fire(self, hook: str, state: TrainState) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(state)

    def extra_loss(self, state: TrainState) -> Tensor | None:
        total = None
        for cb in self.callbacks:
            term = cb.extra_loss(state)
            if term is not None:
                total = term if total is None else total + term
        return total
