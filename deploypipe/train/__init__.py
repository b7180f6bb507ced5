"""Training: ``fit(model, data, TrainConfig(epochs=...))`` with a learning-rate schedule,
progress bars, distillation from a teacher, and callbacks for methods that prune while
they train. ``evaluate`` gives top-1 accuracy."""
from __future__ import annotations

from .callbacks import Callback, CallbackList, TrainState
from .config import SCHEDULES, DistillConfig, TrainConfig
from .evaluate import evaluate, predict_logits
from .loaders import make_loader, seed_everything, wrap_model
from .loop import EpochRecord, TrainResult, fit, make_sgd
from .losses import distillation_loss, kd_divergence
from .schedule import LRSchedule

__all__ = [
    "SCHEDULES", "Callback", "CallbackList", "DistillConfig", "EpochRecord", "LRSchedule", "TrainConfig",
    "TrainResult", "TrainState", "distillation_loss", "evaluate", "fit", "kd_divergence", "make_loader",
    "make_sgd", "predict_logits", "seed_everything", "wrap_model",
]
