"""Timing a callable: warm-up excluded, one monotonic clock reading per iteration.

The garbage collector is paused while timing (as ``timeit`` does) so that a collection
triggered by someone else's allocations does not land in one sample.
"""
from __future__ import annotations

import gc
import time
from typing import Callable

from ..errors import InputError

_MAX_SAMPLES = 1_000_000


def time_callable(fn: Callable[[], object], *, warmup: int, iterations: int,
                  min_seconds: float = 0.0) -> list[float]:
    """Call ``fn`` ``warmup`` times untimed, then at least ``iterations`` times (and for at
    least ``min_seconds``); return each timed call's duration in milliseconds."""
    if warmup < 0 or iterations <= 0:
        raise InputError(f"cannot time {iterations} iterations after {warmup} warm-up runs",
                         hint="use warmup >= 0 and iterations >= 1")
    for _ in range(warmup):
        fn()
    clock = time.perf_counter_ns
    samples: list[float] = []
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        deadline = clock() + int(min_seconds * 1e9)
        while len(samples) < iterations or (clock() < deadline and len(samples) < _MAX_SAMPLES):
            t0 = clock()
            fn()
            samples.append((clock() - t0) / 1e6)
    finally:
        if gc_was_enabled:
            gc.enable()
    return samples
