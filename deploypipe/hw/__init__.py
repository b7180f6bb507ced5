"""Hardware-aware pruning: measured latency tables, knapsack allocation under a latency
budget, and the loop that measures pruned models until one meets the budget.

    table = measure_table(analysis, load_target("cpu"))               # cached per machine
    alloc = LatencyAllocator.for_model(table, analysis, round_to=8)  # coupling, layer weights
    keep = alloc.keep(GroupState.of(analysis, scores), budget_ms=5.0)  # exact knapsack (HALP)
    result = latency_loop(analysis, scores, prunable, alloc, budget, target, TargetTimer.for_pairs(target))
    result.widths, result.measured_ms, result.met                    # the measured plan
"""
from .latency_allocator import Calibration, LatencyAllocator, layer_counts, width_options
from .coupling import Coupling
from .latency_loop import LoopResult, LoopRound, latency_loop
from .measure import TableSpec, measure_table, sample_widths
from .subgraph import group_subgraph, with_batch
from .table import GroupTable, LatencyTable
from .timer import PreparedTimer, TargetTimer, Timer

__all__ = ["Calibration", "Coupling", "GroupTable", "LatencyAllocator", "LatencyTable", "LoopResult", "LoopRound",
           "PreparedTimer", "TableSpec", "TargetTimer", "Timer", "group_subgraph", "latency_loop", "measure_table",
           "layer_counts", "sample_widths", "width_options", "with_batch"]
