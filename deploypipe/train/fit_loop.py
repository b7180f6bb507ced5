"""``fit``: a plain, seeded SGD loop with a per-step schedule, progress bars, one log line
per epoch, optional distillation, and callbacks for methods that prune while training.

Under torchrun (once ``init_distributed`` joined the group) the same loop is data-parallel:
``make_loader`` shards the epoch and ``wrap_model`` wraps the model in DDP; the epoch's loss
and accuracy are summed over ranks and only rank 0 shows progress and logs."""
from __future__ import annotations

import contextlib
import functools
import time
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from torch import Tensor, nn
from torch.optim import SGD, Optimizer
from torch.utils.data import DataLoader

from ..data import DataSplits
from ..errors import DeploypipeError, InputError
from ..utils.log import get_logger, progress
from .augment import augment
from .callbacks import Callback, CallbackList, TrainState
from .config import DistillConfig, TrainConfig
from .collectives import all_reduce_sum, broadcast_buffers
from .dist import is_rank_zero, warn_if_unjoined
from .evaluate import evaluate
from .device import autocast, laid_out, placed, training_device
from .loaders import ResidentBatches, model_device, preserved_modes, seed_everything, start_epoch, training_batches
from .losses import correct_count, distillation_loss, task_loss, teacher_logits
from .schedule import LRSchedule

log = get_logger("train")


@dataclass(frozen=True)
class EpochRecord:
    """One epoch: 1-based index, mean training loss and accuracy, validation accuracy,
    the learning rate of its last step, and its wall time including validation."""

    epoch: int
    train_loss: float
    train_acc: float
    val_acc: float
    lr: float
    seconds: float


@dataclass(frozen=True)
class TrainResult:
    history: tuple[EpochRecord, ...]
    best_val_acc: float
    seconds: float
    steps: int
    stopped_early: bool

    @property
    def final_val_acc(self) -> float:
        return self.history[-1].val_acc if self.history else float("nan")


def make_sgd(model: nn.Module, config: TrainConfig) -> Optimizer:
    """SGD over the trainable parameters, as the config describes."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise InputError("the model has no trainable parameters", hint="unfreeze some parameters before training")
    return SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
               nesterov=config.nesterov)


def fit(model: nn.Module, data: DataSplits, config: TrainConfig, *, teacher: nn.Module | None = None,
        callbacks: Sequence[Callback] = ()) -> TrainResult:
    """Train ``model`` in place on ``data.train``, validating after every epoch.

    With a ``teacher`` the loss distils from it (``config.distill`` or the defaults); the
    teacher runs in eval mode without gradients. Train/eval flags of both are restored.
    """
    distill = _distill_config(config, teacher)
    warn_if_unjoined()
    seed_everything(config.seed)
    device = training_device(config.device, model)
    with placed(model, teacher, device, config.channels_last):
        return _fit(model, data, config, teacher, distill, callbacks,
                    training_batches(data.train, config.batch_size, device, config.seed))


def _fit(model: nn.Module, data: DataSplits, config: TrainConfig, teacher: nn.Module | None,
         distill: DistillConfig | None, callbacks: Sequence[Callback], loader) -> TrainResult:
    steps = len(loader) if config.max_steps_per_epoch is None else min(len(loader), config.max_steps_per_epoch)
    schedule = LRSchedule(config.lr, steps * config.epochs, round(config.warmup_epochs * steps), config.schedule)
    factory = functools.partial(make_sgd, config=config)
    state = TrainState(model, factory(model), schedule, config, factory)
    hooks = CallbackList(callbacks)
    start = time.perf_counter()
    with preserved_modes(model, True), _frozen(teacher):
        hooks.fire("on_train_begin", state)
        while state.epoch < config.epochs and not state.stop:
            record = _run_epoch(state, loader, steps, data, hooks, teacher, distill)
            state.history.append(record)
            if is_rank_zero():
                _log_epoch(record, config.epochs)
            hooks.fire("on_epoch_end", state)
            state.epoch += 1
        hooks.fire("on_train_end", state)
    history = tuple(state.history)
    return TrainResult(history, max((r.val_acc for r in history), default=float("nan")),
                       time.perf_counter() - start, state.step, stopped_early=len(history) < config.epochs)


def _run_epoch(state: TrainState, loader: "DataLoader | ResidentBatches", steps: int, data: DataSplits, hooks: CallbackList,
               teacher: nn.Module | None, distill: DistillConfig | None) -> EpochRecord:
    config, device = state.config, model_device(state.model)
    hooks.fire("on_epoch_begin", state)
    start_epoch(loader, state.epoch)
    start, loss_sum, correct, seen = time.perf_counter(), 0.0, 0, 0
    bar = progress(total=steps, desc=f"epoch {state.epoch + 1}/{config.epochs}", unit="step",
                   disable=None if config.progress and is_rank_zero() else True)
    shuffle = torch.Generator().manual_seed(config.seed * 100_003 + state.epoch)  # per epoch
    with contextlib.closing(bar):
        for i, (inputs, targets) in enumerate(loader):
            if i >= steps:
                break
            inputs = laid_out(augment(inputs.to(device), config.augment, shuffle), config.channels_last)
            loss = _train_step(state, inputs, targets.to(device), hooks, teacher, distill)
            loss_sum += loss * len(targets)
            correct += correct_count(state.outputs.detach(), state.targets)  # type: ignore[union-attr]
            seen += len(targets)
            bar.update(1)
            if i % 10 == 0:
                bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
            if state.stop:
                break
    loss_sum, correct, seen = all_reduce_sum([loss_sum, correct, seen])  # over ranks
    broadcast_buffers(state.model)  # rank 0's BatchNorm statistics everywhere
    val_acc = evaluate(state.model, data.val, config.eval_batch_size)
    return EpochRecord(state.epoch + 1, loss_sum / max(seen, 1), correct / max(seen, 1), val_acc,
                       state.scheduler.lr_at(max(state.step - 1, 0)), time.perf_counter() - start)


def _train_step(state: TrainState, inputs: Tensor, targets: Tensor, hooks: CallbackList,
                teacher: nn.Module | None, distill: DistillConfig | None) -> float:
    """One optimizer step with every hook in its place; returns the total loss."""
    state.inputs, state.targets = inputs, targets
    hooks.fire("on_batch_begin", state)
    state.scheduler.apply(state.optimizer, state.step)
    with autocast(inputs.device, state.config.amp):
        state.outputs = state.net(state.inputs)
        state.loss = _task_loss(state, teacher, distill)
    extra = hooks.extra_loss(state)
    if extra is not None:
        state.loss = state.loss + extra
    if not torch.isfinite(state.loss):
        raise DeploypipeError(f"training diverged: the loss became {float(state.loss.detach())} at epoch "
                              f"{state.epoch + 1}, step {state.step + 1}",
                              hint=f"lower the learning rate (now {state.config.lr}) or add warm-up epochs")
    state.optimizer.zero_grad(set_to_none=True)
    state.loss.backward()
    hooks.fire("on_after_backward", state)
    state.optimizer.step()
    state.step += 1
    hooks.fire("on_step_end", state)
    return float(state.loss.detach())


def _task_loss(state: TrainState, teacher: nn.Module | None, distill: DistillConfig | None) -> Tensor:
    smoothing = state.config.label_smoothing
    if teacher is None or distill is None:
        return task_loss(state.outputs, state.targets, label_smoothing=smoothing)  # type: ignore[arg-type]
    soft = teacher_logits(teacher, state.inputs)  # type: ignore[arg-type]
    return distillation_loss(state.outputs, soft, state.targets, distill,  # type: ignore[arg-type]
                             label_smoothing=smoothing)


def _distill_config(config: TrainConfig, teacher: nn.Module | None) -> DistillConfig | None:
    if config.distill is not None and teacher is None:
        raise InputError("distillation is configured but no teacher model was given",
                         hint="pass a teacher or drop the distillation settings")
    return (config.distill or DistillConfig()) if teacher is not None else None


@contextlib.contextmanager
def _frozen(teacher: nn.Module | None) -> Iterator[None]:
    """The teacher in eval mode for the whole run, its flags restored afterwards."""
    if teacher is None:
        yield
        return
    with preserved_modes(teacher, False):
        yield


def _log_epoch(record: EpochRecord, epochs: int) -> None:
    log.info("epoch %d/%d  loss %.4f  train %.2f%%  val %.2f%%  lr %.4g  %.1fs", record.epoch, epochs,
             record.train_loss, 100 * record.train_acc, 100 * record.val_acc, record.lr, record.seconds)
