"""Training: ``fit(model, data, TrainConfig(epochs=...))`` with a learning-rate schedule,
progress bars, distillation from a teacher, and callbacks for methods that prune while
they train. ``evaluate`` gives top-1 accuracy. Under torchrun, after ``init_distributed``
(or inside ``distributed_session``), the same calls run data-parallel (DDP)."""
from __future__ import annotations

from .callbacks import Callback, CallbackList, TrainState
from .collectives import agree, all_gather_object, all_reduce_sum, barrier, broadcast_object, on_rank_zero
from .config import SCHEDULES, DistillConfig, TrainConfig
from .dist import distributed_session, init_distributed, is_rank_zero, rank, solo, world_size
from .evaluate import check_model_on_data, evaluate, predict_logits
from .loaders import make_loader, seed_everything, start_epoch, wrap_model
from .fit_loop import EpochRecord, TrainResult, fit, make_sgd
from .losses import distillation_loss, kd_divergence
from .schedule import LRSchedule

__all__ = [
    "SCHEDULES", "Callback", "CallbackList", "DistillConfig", "EpochRecord", "LRSchedule", "TrainConfig",
    "TrainResult", "TrainState", "agree", "all_gather_object", "all_reduce_sum", "barrier", "broadcast_object",
    "check_model_on_data", "distillation_loss", "distributed_session", "evaluate", "fit", "init_distributed", "is_rank_zero",
    "kd_divergence", "make_loader", "make_sgd", "on_rank_zero", "predict_logits", "rank", "seed_everything",
    "solo", "start_epoch", "world_size", "wrap_model",
]
