"""Per-module times of a PyTorch model from forward hooks, named like its ONNX initializers.

A pre-hook and a hook on every leaf module mark the start and end of its forward with a
clock: CUDA events on the GPU (read after the run synchronises, so the marks do not stall
the stream), the host clock on the CPU. A module called twice in one forward (torchvision's
shared ``relu``) adds both calls to that run. Module names are the prefixes of the ONNX
initializer names (``layer1.0.conv1`` owns ``layer1.0.conv1.weight``), which is how a
layer maps to ONNX nodes here and to channel groups in :func:`.layer_map.with_groups`.
"""
from __future__ import annotations

import statistics
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any, Callable

from .base import LayerTime
from .layer_map import GraphIndex

if TYPE_CHECKING:
    from torch import nn


class HostClock:
    """Marks are host timestamps; for CPU runs and tests."""

    def mark(self) -> int:
        return time.perf_counter_ns()

    def elapsed_ms(self, a: int, b: int) -> float:
        return (b - a) / 1e6

    def sync(self) -> None:
        pass


class CudaClock:
    """Marks are CUDA events recorded on the current stream."""

    def mark(self) -> Any:
        import torch

        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def elapsed_ms(self, a: Any, b: Any) -> float:
        return float(a.elapsed_time(b))

    def sync(self) -> None:
        import torch

        torch.cuda.synchronize()


class ModuleTimer:
    """Hooks on the leaf modules of ``model``; ``run(fn)`` times one forward per call."""

    def __init__(self, model: "nn.Module", clock: HostClock | CudaClock):
        self.clock = clock
        self.types: dict[str, str] = {}
        self.times: dict[str, list[float]] = {}
        self._open: dict[str, list[Any]] = defaultdict(list)
        self._marks: list[tuple[str, Any, Any]] = []
        self._handles = []
        for name, module in model.named_modules():
            if name and not any(True for _ in module.children()):
                self.types[name] = type(module).__name__
                self._handles.append(module.register_forward_pre_hook(self._start(name)))
                self._handles.append(module.register_forward_hook(self._stop(name)))

    def _start(self, name: str) -> Callable:
        def hook(module, args):
            self._open[name].append(self.clock.mark())
        return hook

    def _stop(self, name: str) -> Callable:
        def hook(module, args, output):
            self._marks.append((name, self._open[name].pop(), self.clock.mark()))
        return hook

    def run(self, fn: Callable[[], object]) -> None:
        """Call ``fn`` (one forward) and add each module's time in it to ``times``."""
        self._marks.clear()
        fn()
        self.clock.sync()
        per_run: dict[str, float] = defaultdict(float)
        for name, a, b in self._marks:
            per_run[name] += self.clock.elapsed_ms(a, b)
        for name, ms in per_run.items():
            self.times.setdefault(name, []).append(ms)

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def layers_from_timer(timer: ModuleTimer, index: GraphIndex | None) -> list[LayerTime]:
    """LayerTimes in first-execution order; ``onnx_nodes`` are the nodes that read the
    module's initializers (its weight first)."""
    total = sum(sum(ts) for ts in timer.times.values()) or 1.0
    layers = []
    for name, ts in timer.times.items():
        nodes = module_nodes(name, index) if index is not None else ()
        layers.append(LayerTime(name=name, op_type=timer.types[name], timeMs=sum(ts),
                                averageMs=sum(ts) / len(ts), medianMs=statistics.median(ts),
                                percentage=100.0 * sum(ts) / total,
                                onnx_node=nodes[0] if nodes else None, onnx_nodes=nodes))
    return layers


def module_nodes(module: str, index: GraphIndex) -> tuple[str, ...]:
    """ONNX nodes reading an initializer of ``module`` (``module.weight`` first)."""
    prefix = module + "."
    found = [n for n in index.order
             if any(t == prefix + "weight" for t in index.tensors[n])]
    found += [n for n in index.order
              if n not in found and any(t.startswith(prefix) for t in index.tensors[n])]
    return tuple(found)
