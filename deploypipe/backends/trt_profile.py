"""Per-layer times from TensorRT's ``IProfiler``, mapped back to ONNX nodes.

TensorRT calls ``report_layer_time(layer_name, ms)`` once per engine layer for every
``execute_async_v3`` while a profiler is attached to the execution context. The records
keep the first-report order (the execution order) and every run's time per layer.
"""
from __future__ import annotations

import statistics
from typing import Any

from .base import LayerTime
from .layer_map import GraphIndex, trt_layer_nodes, trt_op_type


class LayerRecords:
    """Milliseconds per layer per run, in the order the layers first ran."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {}

    def add(self, layer_name: str, ms: float) -> None:
        self.times.setdefault(str(layer_name), []).append(float(ms))


def make_profiler(trt: Any, records: LayerRecords) -> Any:
    """An ``IProfiler`` that writes into ``records`` (the class derives from the imported
    module's ``IProfiler``, so it is made when TensorRT is there, not at import)."""

    class _Profiler(trt.IProfiler):
        def __init__(self) -> None:
            trt.IProfiler.__init__(self)  # pybind11 trampolines need the explicit call

        def report_layer_time(self, layer_name: str, ms: float) -> None:
            records.add(layer_name, ms)

    return _Profiler()


def layers_from_records(records: LayerRecords, index: GraphIndex | None) -> list[LayerTime]:
    """LayerTimes (trtexec's fields) with each layer's ONNX nodes, in execution order."""
    total = sum(sum(ts) for ts in records.times.values()) or 1.0
    layers = []
    for name, ts in records.times.items():
        nodes = trt_layer_nodes(name, index) if index is not None else ()
        op = trt_op_type(name, nodes, index) if index is not None else "TensorRT"
        layers.append(LayerTime(name=name, op_type=op, timeMs=sum(ts),
                                averageMs=sum(ts) / len(ts), medianMs=statistics.median(ts),
                                percentage=100.0 * sum(ts) / total,
                                onnx_node=nodes[0] if nodes else None, onnx_nodes=nodes))
    return layers
