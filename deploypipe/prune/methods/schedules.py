"""The classic schedules: one-shot (score, allocate, remove once) and iterative (k rounds
of score, remove a part, fine-tune)."""
from __future__ import annotations

from ..budget import Budget
from .base import METHODS, Param, PruneContext, PruneMethod, geometric_steps


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
        budget = ctx.request.budget
        steps = max(1, int(self.param("steps")))
        for i, sub in enumerate(_sub_budgets(ctx, budget, steps)):
            ctx.prune_to(sub)
            if i + 1 < steps:
                ctx.finetune(int(self.param("step_epochs")))
        if steps > 1 and ctx.data is not None:
            from .phase import finetune_loss

            ctx.losses["between_rounds"] = finetune_loss(ctx, True, False)


def _sub_budgets(ctx: PruneContext, budget: Budget, steps: int):
    if budget.kind == "ratio":
        keep = 1 - budget.value
        for i in range(1, steps + 1):
            yield Budget("ratio", 1 - keep ** (i / steps))
        return
    dense = ctx.dense_value(budget.kind)
    for target in geometric_steps(dense, budget.target(dense), steps):
        yield Budget(budget.kind, target, "absolute")
