"""Task and distillation losses."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .config import DistillConfig


def kd_divergence(student_logits: Tensor, teacher_logits: Tensor, tau: float) -> Tensor:
    """KL(p_teacher || p_student) of the softmaxes at temperature ``tau``, mean over the batch."""
    log_p_student = F.log_softmax(student_logits / tau, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits / tau, dim=1)
    return F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)


def distillation_loss(student_logits: Tensor, teacher_logits: Tensor, targets: Tensor,
                      config: DistillConfig, *, label_smoothing: float = 0.0) -> Tensor:
    """alpha * tau^2 * KD + (1 - alpha) * CE; tau^2 keeps the soft-target gradients at the
    scale of the hard ones (Hinton et al. 2015)."""
    kd = kd_divergence(student_logits, teacher_logits.detach(), config.tau)
    ce = F.cross_entropy(student_logits, targets, label_smoothing=label_smoothing)
    return config.alpha * config.tau ** 2 * kd + (1.0 - config.alpha) * ce


def task_loss(logits: Tensor, targets: Tensor, *, label_smoothing: float = 0.0) -> Tensor:
    return F.cross_entropy(logits, targets, label_smoothing=label_smoothing)


def correct_count(logits: Tensor, targets: Tensor) -> int:
    return int((logits.argmax(dim=1) == targets).sum())


@torch.no_grad()
def teacher_logits(teacher: torch.nn.Module, inputs: Tensor) -> Tensor:
    return teacher(inputs)
