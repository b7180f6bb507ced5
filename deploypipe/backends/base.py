"""The one contract every backend keeps: build an engine from ONNX, run it, time it,
profile it per layer.

A :class:`Backend` turns an ONNX file and a :class:`TargetProfile` into an :class:`Engine`.
Engines own native resources (sessions, CUDA contexts), so they are context managers.
Timing lives here once: a backend only says how one inference is launched
(:meth:`Engine._timed_call`), the warm-up, repetition and statistics are shared.
"""
from __future__ import annotations

import abc
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from ..measure.stats import LatencyStats
from ..measure.timing import time_callable
from ..targets import TargetProfile
from .feeds import TensorSpec, random_feeds


@dataclass(frozen=True)
class LayerTime:
    """Time of one executed layer (kernel) over the profiled iterations; the camelCase
    fields are those of trtexec's ``--exportProfile`` JSON. ``onnx_node`` is the ONNX node
    the layer comes from (``None`` for a layer the backend inserted, such as a layout
    conversion); a fused layer names the node whose name or output it carries first and
    lists every node it covers in ``onnx_nodes``. ``groups`` holds the channel groups those
    nodes touch, once :func:`deploypipe.backends.layer_map.with_groups` has filled it."""

    name: str
    op_type: str
    timeMs: float  # total over all profiled iterations
    averageMs: float
    medianMs: float
    percentage: float  # of the summed layer times
    onnx_node: str | None = None
    onnx_nodes: tuple[str, ...] = ()
    groups: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class Engine(abc.ABC):
    """A model ready to run on one backend and device."""

    backend_name: str = "?"

    @property
    @abc.abstractmethod
    def inputs(self) -> Sequence[TensorSpec]:
        """The model's inputs; a dimension is an int, or a str/None where it is dynamic."""

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.inputs]

    @property
    def input_shapes(self) -> dict[str, tuple[int | str | None, ...]]:
        return {s.name: s.shape for s in self.inputs}

    @abc.abstractmethod
    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """One inference; returns the outputs as host arrays, in the model's output order."""

    @abc.abstractmethod
    def profile_layers(self, batch: int, iterations: int, *,
                       sample_shape: tuple[int, ...] | None = None) -> list["LayerTime"]:
        """Per-layer times over ``iterations`` runs at ``batch``, in execution order
        (``sample_shape``: per-sample dims for inputs the model leaves dynamic)."""

    def close(self) -> None:
        """Release native resources; the engine cannot run afterwards."""

    def feeds(self, batch: int, *, seed: int = 0,
              sample_shape: tuple[int, ...] | None = None) -> dict[str, np.ndarray]:
        """Random inputs of the model's shapes with dynamic batch dims set to ``batch``."""
        return random_feeds(self.inputs, batch, seed=seed, sample_shape=sample_shape)

    def time(self, batch: int, warmup: int, iterations: int, *, min_seconds: float = 0.0,
             sample_shape: tuple[int, ...] | None = None) -> LatencyStats:
        """Latency of one inference at ``batch`` (warm-up excluded)."""
        call = self._timed_call(self.feeds(batch, sample_shape=sample_shape))
        samples = self._time_samples(call, warmup=warmup, iterations=iterations,
                                     min_seconds=min_seconds)
        return LatencyStats.from_samples(samples, batch=batch)

    def _time_samples(self, call: Callable[[], object], *, warmup: int, iterations: int,
                      min_seconds: float) -> list[float]:
        """Milliseconds per timed call: the host clock here; GPU engines read CUDA events
        recorded on their stream instead, so that a sample is the device's time."""
        return time_callable(call, warmup=warmup, iterations=iterations,
                             min_seconds=min_seconds)

    def _timed_call(self, feeds: dict[str, np.ndarray]) -> Callable[[], object]:
        """What one timed iteration calls. GPU engines override it to bind buffers once
        and synchronise the device, so that the clock sees the whole inference."""
        return lambda: self.run(feeds)

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Backend(abc.ABC):
    """Builds engines for one engine family (ONNX Runtime, TensorRT, PyTorch); whether it
    can run here is the runtime registry's answer (:mod:`deploypipe.backends.runtimes`)."""

    name: str = "?"
    description: str = ""

    @abc.abstractmethod
    def build(self, onnx_path: str | Path, target: TargetProfile, *,
              cache_dir: str | Path | None = None) -> Engine:
        """An engine for ``onnx_path`` on ``target``. ``cache_dir``, where a backend uses one,
        holds built artifacts keyed by model content, target and hardware fingerprint."""
