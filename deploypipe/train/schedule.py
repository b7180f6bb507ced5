"""The learning rate as a pure function of the global step, so that replacing the
optimizer (a callback that slims modules) keeps the schedule's position."""
from __future__ import annotations

import math
from dataclasses import dataclass

from torch.optim import Optimizer

# The step schedule divides the rate by 10 at these fractions of training.
STEP_MILESTONES = (0.5, 0.75)


@dataclass(frozen=True)
class LRSchedule:
    """Linear warm-up over ``warmup_steps``, then cosine to zero, 10x steps, or constant."""

    base_lr: float
    total_steps: int
    warmup_steps: int = 0
    kind: str = "cosine"

    def lr_at(self, step: int) -> float:
        """The rate for the optimizer step with index ``step`` (0-based)."""
        if step < self.warmup_steps:
            return self.base_lr * (step + 1) / self.warmup_steps
        span = max(self.total_steps - self.warmup_steps, 1)
        t = min(max(step - self.warmup_steps, 0) / span, 1.0)
        if self.kind == "cosine":
            return self.base_lr * 0.5 * (1.0 + math.cos(math.pi * t))
        if self.kind == "step":
            return self.base_lr * 0.1 ** sum(t >= m for m in STEP_MILESTONES)
        return self.base_lr

    def apply(self, optimizer: Optimizer, step: int) -> float:
        lr = self.lr_at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr
