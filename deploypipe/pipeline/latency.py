"""The latency stage of ``deploypipe build``: the dense model's latency table on the target
(measured, or from the cache), then the measure-and-correct loop, whose measured widths
(``LatencyPlan.result.widths``) the build prunes to."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..graph import Analysis
from ..prune.budget import Budget
from ..targets import TargetProfile
from ..utils.files import write_json
from ..utils.log import get_logger

if TYPE_CHECKING:
    from ..hw import LatencyTable, LoopResult

log = get_logger("build")

TABLE_FILE = "latency_table.json"


@dataclass(frozen=True)
class LatencyOptions:
    """How the latency loop runs: rounds, the tolerance window below the budget, the
    table's sampling step (default: the target's multiple) and its cache."""

    rounds: int = 8  # a round of a 1-ms model costs ~1 s; one of resnet50 at batch 1, ~5 s
    tolerance: float = 0.05
    step: int | None = None
    cache_dir: Path | None = None
    use_cache: bool = True
    coupled: bool = True  # correct the additive model for Convs between two pruned groups


@dataclass(frozen=True)
class LatencyPlan:
    """The latency stage's outcome: the table, the loop's result (its widths are what the
    build prunes to), the budget it was met against and how to time the delivered model."""

    table: "LatencyTable"
    result: "LoopResult"
    budget: Budget
    target: TargetProfile
    timer: Any  # the loop's timer, for the final check
    conversion: dict[str, Any] = field(default_factory=dict)  # how a ratio of dense fp32 became this budget

    def check(self, dense: Path, pruned: Path) -> dict[str, Any]:
        """The dense and pruned ONNX files the build wrote, timed interleaved as the loop
        times its models: does the model delivered meet the budget? (The profiles time the two
        one after the other, on a machine that may drift between them.)"""
        import onnx

        from ..hw import with_batch

        t = self.target
        dense_ms, pruned_ms = self.timer.time([with_batch(onnx.load(str(p)), t.batch, t.input_shape)
                                               for p in (dense, pruned)])
        budget_ms = self.budget.target(dense_ms)
        met = pruned_ms <= budget_ms
        return {"final_dense_ms": dense_ms, "final_pruned_ms": pruned_ms, "final_budget_ms": budget_ms,
                "final_meets_budget": met,
                "final_sentence": f"the exported pruned model, timed beside the dense one: {pruned_ms:.4g} ms "
                                  f"for a budget of {budget_ms:.4g} ms (dense {dense_ms:.4g} ms, "
                                  f"{'met' if met else 'missed'})"}

    def report(self, run_dir: Path, final_profile_ms: float | None = None,
               final: dict[str, Any] | None = None) -> dict[str, Any]:
        """Report fields: the table (written beside the report), every round, the outcome
        (with :meth:`check`'s fields when given)."""
        write_json(run_dir / TABLE_FILE, self.table.to_dict())
        outcome = {**self.result.to_dict(), **(final or {}),
                   **({"budget_conversion": self.conversion} if self.conversion else {})}
        if final_profile_ms is not None:
            outcome["final_profile_ms"] = final_profile_ms
        return {"latency_table": {"path": TABLE_FILE, **self.table.summary()},
                "latency_loop": [r.to_dict() for r in self.result.rounds],
                "latency_result": outcome}


def plan_latency(analysis: Analysis, scores: Sequence[np.ndarray], prunable: Sequence[bool],
                 target: TargetProfile, budget: Budget, *, round_to: int, max_ratio: float,
                 options: LatencyOptions = LatencyOptions(), timer=None, prepare=None) -> LatencyPlan:
    """Measure (or load) the table of ``analysis.model`` and run the loop. ``prepare`` turns
    each model into what the target will run before it is timed (a quantizer: the table and
    the loop then time quantized sub-models and candidates)."""
    from ..hw import LatencyAllocator, PreparedTimer, TableSpec, TargetTimer, latency_loop, measure_table

    spec = TableSpec(step=options.step, cache_dir=options.cache_dir, use_cache=options.use_cache)
    table_timer, timer = timer or TargetTimer(target), timer or TargetTimer.for_pairs(target)
    if prepare is not None:
        table_timer, timer = PreparedTimer(table_timer, prepare), PreparedTimer(timer, prepare)
    table = measure_table(analysis, target, spec, timer=table_timer)
    alloc = LatencyAllocator.for_model(table, analysis, round_to=round_to, max_ratio=max_ratio,
                                       coupled=options.coupled)
    flagged = table.non_monotonic()
    if flagged:
        log.info("latency table: %d of %d groups have %d width(s) measured slower than a narrower one (listed "
                 "under non_monotonic in %s); the allocation avoids those widths", len(flagged), len(table.groups),
                 sum(map(len, flagged.values())), TABLE_FILE)
    result = latency_loop(analysis, scores, prunable, alloc, budget, target, timer,
                          rounds=options.rounds, tolerance=options.tolerance)
    log.info(result.sentence())
    return LatencyPlan(table, result, budget, target, timer)
