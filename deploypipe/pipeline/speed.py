"""Is the pruned model faster? The dense and pruned ONNX files timed in alternating bursts.

The build's two profiles time the models one after the other (per-layer times need a profile
of their own), and on a shared machine the load can change between them by more than pruning
changes the latency: a 0.08-ms model measured 0.56x, 1.09x and 1.27x of dense speed in three
identical builds. Interleaved bursts share each moment's load; the per-burst ratios give the
speed-up a distribution-free interval, and the summary claims "faster" or "slower" only where
the interval lies beyond the target's ``same_speed_margin`` of 1 (3% unless its profile says
otherwise; "same speed" where it lies within, else "inconclusive").
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..targets import TargetProfile


def on_cpu(target: TargetProfile) -> bool:
    """ONNX Runtime on the CPU: one session type runs fp32 and Q/DQ graphs alike, so the run's
    models can be timed in alternation."""
    return target.backend == "onnxruntime" and target.device == "cpu"


def run_models(run_dir: Path, files: tuple[str, ...], target: TargetProfile) -> list:
    """The ONNX ``files`` of ``run_dir`` at the target's batch and input shape, ready for
    :class:`~deploypipe.hw.TargetTimer`."""
    import onnx

    from ..hw import with_batch

    return [with_batch(onnx.load(str(run_dir / f)), target.batch, target.input_shape) for f in files]


def interleaved_speed(run_dir: Path, target: TargetProfile, iterations: int | None = None) -> dict[str, Any]:
    """dense.onnx and pruned.onnx of ``run_dir`` timed in ``PAIR_BURSTS`` alternating bursts on
    ``target`` (at least one iteration per burst): each one's median over bursts and
    :func:`~deploypipe.measure.stats.paired_speedup`, on any target: both models run at the
    target's one precision (a GPU target builds an engine for each and alternates them as the
    latency loop does). Where the timing fails this returns a note and makes no claim."""
    import statistics

    from ..hw import TargetTimer
    from ..hw.timer import PAIR_BURSTS
    from ..measure.stats import paired_speedup

    timer = TargetTimer.for_pairs(target, iterations=max(iterations or target.iterations, PAIR_BURSTS))
    try:
        dense, pruned = timer.bursts_of(run_models(run_dir, ("dense.onnx", "pruned.onnx"), target))
        speed = paired_speedup(dense, pruned, margin=target.same_speed_margin)
    except Exception as exc:  # noqa: BLE001  (the build stands without it; the report says why)
        return {"note": f"interleaved timing failed: {str(exc)[:300]}"}
    return {"dense_ms": statistics.median(dense), "pruned_ms": statistics.median(pruned), **speed,
            "iterations": timer.iterations, "statistic": target.statistic,
            "note": "dense and pruned timed in alternating bursts (ABBA), sharing the machine's load; "
                    "each *_ms is the median over bursts of the target's statistic"}
