"""Is the pruned model faster? The dense and pruned ONNX files timed in alternating bursts.

The build's two profiles time the models one after the other (per-layer times need a profile
of their own), and on a shared machine the load can change between them by more than pruning
changes the latency: a 0.08-ms model measured 0.56x, 1.09x and 1.27x of dense speed in three
identical builds. Interleaved bursts share each moment's load; the per-burst ratios give the
speed-up an interval, and the summary claims "faster" or "slower" only where the interval does.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..targets import TargetProfile
from .quantize_stage import on_cpu


def interleaved_speed(run_dir: Path, target: TargetProfile, iterations: int | None = None) -> dict[str, Any]:
    """dense.onnx and pruned.onnx of ``run_dir`` timed in ``PAIR_BURSTS`` alternating bursts on
    ``target``: each one's median over bursts and :func:`~deploypipe.measure.stats.paired_speedup`.
    GPU targets build an engine per model and are profiled alone: there this returns a note."""
    import statistics

    import onnx

    from ..hw import TargetTimer, with_batch
    from ..measure.stats import paired_speedup

    if not on_cpu(target):
        return {"note": "timed interleaved on CPU targets only"}
    timer = TargetTimer.for_pairs(target, iterations=iterations)
    dense, pruned = timer.bursts_of([with_batch(onnx.load(str(run_dir / f"{stem}.onnx")), target.batch,
                                                target.input_shape) for stem in ("dense", "pruned")])
    return {"dense_ms": statistics.median(dense), "pruned_ms": statistics.median(pruned),
            **paired_speedup(dense, pruned), "iterations": timer.iterations, "statistic": target.statistic,
            "note": "dense and pruned timed in alternating bursts, sharing the machine's load"}
