"""Timing ONNX models on a target, several at once and interleaved.

Load on a shared machine drifts over seconds; timing the models of one comparison (the
widths of one group, or the dense and the pruned model) in alternating bursts makes every
model see the same drift, so their differences stay honest. Each model's latency is the
median over bursts of the target's statistic (median, p90 or p99) within a burst.

Only ``CHUNK`` engines are alive at once. A call with more models times them in chunks at
different moments, so every chunk after the first also times the call's first model (the
reference) and its results are scaled by how much faster or slower the reference ran then:
the models of one call stay comparable, whichever chunk they were timed in.

Sessions with a CPU thread pool slow each other down when timed back to back (see
:func:`deploypipe.backends.ort.settle_seconds`): the timer pauses before each burst.

A :class:`Timer` is anything with ``time(models) -> [ms]``; tests pass counting fakes.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable, Protocol, Sequence

import onnx

from ..targets import TargetProfile
from ..utils.log import get_logger

log = get_logger("hw")

CHUNK = 8  # engines alive at once (memory)
# Bursts for one pruned model timed beside the dense one (the loop's verdicts): enough for the
# pruned/dense ratio to settle on a shared host; many tiny bursts are biased by sessions waking up.
PAIR_BURSTS = 11
MS_PER_ITERATION = 2.5  # floor on timing time per model: 100 iterations -> at least 0.25 s


class Timer(Protocol):
    def time(self, models: Sequence[onnx.ModelProto]) -> list[float]:
        """Latency in ms of each model, in order."""
        ...


class TargetTimer:
    """Times models with the target's backend, batch, warm-up and iteration count."""

    def __init__(self, target: TargetProfile, *, iterations: int | None = None, warmup: int | None = None,
                 bursts: int = 5):
        self.target = target
        self.iterations = max(1, iterations or target.iterations)
        self.warmup = target.warmup if warmup is None else warmup
        self.bursts = max(1, min(bursts, self.iterations))
        # microsecond sub-graphs: at least MS_PER_ITERATION of timing per asked iteration
        self.min_burst_seconds = self.iterations * MS_PER_ITERATION / 1000 / self.bursts
        from ..backends.ort import settle_seconds

        self.settle = settle_seconds(target)
        self.calls = 0  # models timed (for reports and tests)

    @classmethod
    def for_pairs(cls, target: TargetProfile, *, iterations: int | None = None) -> TargetTimer:
        """The timer of the loop's verdicts: more bursts than a table's (see :data:`PAIR_BURSTS`)."""
        return cls(target, iterations=iterations, bursts=PAIR_BURSTS)

    def time(self, models: Sequence[onnx.ModelProto]) -> list[float]:
        out = self._time_chunk(models[:CHUNK])
        for start in range(CHUNK, len(models), CHUNK - 1):
            reference, *rest = self._time_chunk([models[0], *models[start:start + CHUNK - 1]])
            out += [ms * out[0] / reference for ms in rest]
        return out

    def bursts_of(self, models: Sequence[onnx.ModelProto]) -> list[list[float]]:
        """Each model's statistic in every burst (at most ``CHUNK`` models): burst ``i`` of every
        model was timed in the same moment, so ratios of one burst are paired."""
        if len(models) > CHUNK:
            raise ValueError(f"bursts_of times at most {CHUNK} models at once")
        return self._time_chunk(models, raw=True)

    def _time_chunk(self, models: Sequence[onnx.ModelProto], raw: bool = False):
        from ..backends import backend_for_target

        backend = backend_for_target(self.target)
        with tempfile.TemporaryDirectory(prefix="deploypipe-lut-") as tmp:
            engines = []
            try:
                for i, model in enumerate(models):
                    path = Path(tmp) / f"m{i}.onnx"
                    onnx.save(model, str(path))
                    engines.append(backend.build(path, self.target))
                values = self._interleave(engines)
                return values if raw else [statistics.median(v) for v in values]
            finally:
                for e in engines:
                    e.close()

    def _interleave(self, engines) -> list[list[float]]:
        t = self.target
        per_burst = max(1, self.iterations // self.bursts)
        values: list[list[float]] = [[] for _ in engines]
        order = list(range(len(engines)))
        for burst in range(self.bursts):
            # odd bursts run the models in reverse (ABBA): a cost of going first or last (a pool
            # waking up, the clock ramping) falls on every model alike instead of on the first one
            for i in (order if burst % 2 == 0 else order[::-1]):
                engine = engines[i]
                if self.settle and len(engines) > 1:
                    time.sleep(self.settle)
                stats = engine.time(t.batch, self.warmup if burst == 0 else 1, per_burst,
                                    min_seconds=self.min_burst_seconds, sample_shape=_sample_shape(engine, t))
                values[i].append(stats.statistic(t.statistic))
        self.calls += len(engines)
        return values


class PreparedTimer:
    """A timer that times ``prepare(model)`` for each model: what the target will run when
    that is not the graph the table cuts (a quantized graph for an int8 target)."""

    def __init__(self, inner: Timer, prepare: Callable[[onnx.ModelProto], onnx.ModelProto]):
        self.inner, self.prepare = inner, prepare

    def time(self, models: Sequence[onnx.ModelProto]) -> list[float]:
        return self.inner.time([self.prepare(m) for m in models])

    def __getattr__(self, name: str):  # bursts, iterations, calls: the inner timer's
        if name in ("inner", "prepare"):  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)


def _sample_shape(engine, target: TargetProfile) -> tuple[int, ...] | None:
    """The profile's per-sample shape, only for a model whose input leaves dims dynamic."""
    dynamic = any(not isinstance(d, int) for spec in engine.inputs for d in spec.shape[1:])
    return target.input_shape if dynamic else None
