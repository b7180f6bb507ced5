"""The classic schedules: one-shot (score, allocate, remove once) and iterative (k rounds
of score, remove a part, fine-tune)."""
from __future__ import annotations

from .base import METHODS, Param, PruneContext, PruneMethod


@METHODS.register("oneshot")
class OneShot(PruneMethod):
    name = "oneshot"
    description = "score once with --importance, allocate to the budget, remove; then fine-tune"

    def run(self, ctx: PruneContext) -> None:
        ctx.prune_to(ctx.request.budget)


@METHODS.register("iterative")
class Iterative(PruneMethod):
    name = "iterative"
    description = "k rounds of scoring and removing a geometric share of the budget, fine-tuning between rounds"
    params = {"steps": Param(3, "number of pruning rounds"),
              "step_epochs": Param(1, "fine-tuning epochs between rounds")}

    def run(self, ctx: PruneContext) -> None:
        """Round i of k prunes i/k of the way (geometrically) to the budget: for a latency
        budget, each group i/k of the way to the measured plan's width."""
        steps = max(1, int(self.param("steps")))
        for i in range(1, steps + 1):
            ctx.prune_toward(i / steps)
            if i < steps:
                ctx.finetune(int(self.param("step_epochs")))
        if steps > 1 and ctx.data is not None and ctx.data.has_training and ctx.train_config is not None:
            from .phase import finetune_loss

            ctx.losses["between_rounds"] = finetune_loss(ctx, True, False)
