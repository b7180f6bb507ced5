"""Training settings as frozen, validated values: what to do, not how."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError
from .augment import AUGMENTATIONS

SCHEDULES = ("cosine", "step", "constant")


@dataclass(frozen=True)
class DistillConfig:
    """Knowledge distillation (Hinton et al. 2015): loss = alpha * tau^2 * KD + (1 - alpha) * CE,
    where KD = KL(p_teacher || p_student) of the softmaxes at temperature tau."""

    tau: float = 4.0
    alpha: float = 0.9

    def __post_init__(self) -> None:
        _check(self.tau > 0, f"distillation temperature tau must be positive, got {self.tau}")
        _check(0.0 <= self.alpha <= 1.0, f"distillation weight alpha must lie in [0, 1], got {self.alpha}")


@dataclass(frozen=True)
class TrainConfig:
    """SGD training: batch size, learning rate and its schedule (per step, with linear
    warm-up), regularisation, seed, optional distillation from a teacher, and where and in
    what arithmetic it runs (device, bfloat16 autocast, channels-last)."""

    epochs: int
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    seed: int = 0
    label_smoothing: float = 0.0
    eval_batch_size: int = 512
    max_steps_per_epoch: int | None = None
    progress: bool = True
    distill: DistillConfig | None = None
    augment: str = "none"  # "crop-flip": padded random crop and mirror (train/augment.py)
    device: str | None = None  # "cpu", "cuda", "cuda:N"; None: where the model is (train/device.py)
    amp: bool = False  # bfloat16 autocast for forward and loss
    channels_last: bool = False  # the model and 4-d batches in channels-last layout while training

    def __post_init__(self) -> None:
        _check(self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}")
        _check(self.batch_size >= 1, f"batch size must be at least 1, got {self.batch_size}")
        _check(self.eval_batch_size >= 1, f"eval batch size must be at least 1, got {self.eval_batch_size}")
        _check(self.lr > 0, f"learning rate must be positive, got {self.lr}")
        _check(0.0 <= self.momentum < 1.0, f"momentum must lie in [0, 1), got {self.momentum}")
        _check(self.weight_decay >= 0, f"weight decay must not be negative, got {self.weight_decay}")
        _check(not self.nesterov or self.momentum > 0, "Nesterov momentum needs momentum > 0")
        _check(self.schedule in SCHEDULES,
               f"unknown learning-rate schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        _check(self.augment in AUGMENTATIONS,
               f"unknown augmentation {self.augment!r}; choose one of {', '.join(AUGMENTATIONS)}")
        _check(0 <= self.warmup_epochs <= self.epochs,
               f"warm-up epochs must lie in [0, epochs={self.epochs}], got {self.warmup_epochs}")
        _check(0.0 <= self.label_smoothing < 1.0,
               f"label smoothing must lie in [0, 1), got {self.label_smoothing}")
        _check(self.max_steps_per_epoch is None or self.max_steps_per_epoch >= 1,
               f"max steps per epoch must be at least 1, got {self.max_steps_per_epoch}")
        if self.device is not None:
            from .device import check_device

            check_device(self.device)  # fail before any data is loaded


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise InputError(message)
