"""ONNX Runtime's profiler trace turned into per-layer times, mapped back to ONNX nodes.

The trace (``SessionOptions.enable_profiling``) is a Chrome-trace JSON list; each executed
kernel is an event with ``cat == "Node"``, a name ending in ``_kernel_time`` and its
duration in microseconds. ONNX Runtime fuses and renames nodes (a Conv+BatchNorm+Relu
becomes one NCHWc ``Conv`` named after its output tensor plus ``_nchwc``), so a kernel is
mapped to the original node of the same name, else to the node producing the tensor it is
named after, else to nothing (a layout conversion ONNX Runtime inserted).
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any, Iterable

from ..errors import InputError
from .base import LayerTime

_KERNEL = "_kernel_time"
_SUFFIXES = ("_nchwc",)


def read_trace(trace: Path) -> list[dict[str, Any]]:
    try:
        events = json.loads(Path(trace).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the ONNX Runtime profile {str(trace)!r} ({exc})") from None
    return events if isinstance(events, list) else events.get("traceEvents", [])


def kernel_durations(events: Iterable[dict[str, Any]]) -> dict[str, tuple[str, list[float]]]:
    """node name -> (op type, per-run kernel times in ms), in first-execution order."""
    per_node: dict[str, tuple[str, list[float]]] = {}
    for ev in events:
        name = ev.get("name", "")
        if ev.get("cat") != "Node" or not name.endswith(_KERNEL):
            continue
        node = name[: -len(_KERNEL)]
        op = ev.get("args", {}).get("op_name", "?")
        per_node.setdefault(node, (op, []))[1].append(float(ev.get("dur", 0.0)) / 1000.0)
    return per_node


def run_durations(events: Iterable[dict[str, Any]], *, skip_runs: int = 0) -> list[float]:
    """Whole-inference times (ms) as the profiler saw them (``model_run`` events)."""
    runs = [float(ev["dur"]) / 1000.0 for ev in events
            if ev.get("cat") == "Session" and ev.get("name") == "model_run"]
    return runs[skip_runs:]


def layers_from_events(events: list[dict[str, Any]], nodes: "NodeIndex | None" = None, *,
                       skip_runs: int = 0) -> list[LayerTime]:
    per_node = {n: (op, ts[skip_runs:] if len(ts) > skip_runs else ts)
                for n, (op, ts) in kernel_durations(events).items()}
    total = sum(sum(ts) for _, ts in per_node.values()) or 1.0
    layers = []
    for n, (op, ts) in per_node.items():
        origin = nodes.origin(n) if nodes else None
        covered = nodes.fused(origin, op) if nodes and origin else ((origin,) if origin else ())
        layers.append(LayerTime(name=n, op_type=op, timeMs=sum(ts), averageMs=sum(ts) / len(ts),
                                medianMs=statistics.median(ts), percentage=100.0 * sum(ts) / total,
                                onnx_node=origin, onnx_nodes=covered))
    return layers


_CONV_KERNELS = ("Conv", "FusedConv", "NchwcConv", "Gemm", "FusedGemm", "MatMul", "FusedMatMul")
_CONV_OPS = ("Conv", "Gemm", "MatMul", "ConvTranspose")
_FUSABLE = ("BatchNormalization", "Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid",
            "HardSwish", "Tanh", "Add", "Mul")
_MAX_FUSED = 3  # Conv -> BatchNormalization -> Add -> Relu at most


class NodeIndex:
    """The original graph's node names and which node produces each tensor."""

    def __init__(self, node_names: Iterable[str], producers: dict[str, str],
                 ops: dict[str, str] | None = None, inputs: dict[str, list[str]] | None = None):
        self.names = set(node_names)
        self.producers = producers
        self.ops, self.inputs = ops or {}, inputs or {}

    def fused(self, origin: str, kernel_op: str) -> tuple[str, ...]:
        """The nodes one kernel covers: ONNX Runtime names a convolution fused with the
        BatchNorm, activation or residual Add after it by that last node's output, so walk
        back from ``origin`` to the Conv/Gemm the kernel ``kernel_op`` starts from."""
        if kernel_op not in _CONV_KERNELS or self.ops.get(origin) in _CONV_OPS:
            return (origin,)
        chain, node = [origin], origin
        for _ in range(_MAX_FUSED):
            if self.ops.get(node) not in _FUSABLE:
                break
            parents = [self.producers.get(t) for t in self.inputs.get(node, [])]
            # through the BatchNorm/activation the kernel fused before a Conv: a residual
            # Add's other input may come from a Conv of its own (the skip path)
            node = next((p for p in parents if self.ops.get(p) in _FUSABLE), None) or next(
                (p for p in parents if self.ops.get(p) in _CONV_OPS), None)
            if node is None:
                break
            chain.insert(0, node)
            if self.ops.get(node) in _CONV_OPS:
                return tuple(chain)
        return (origin,)

    def origin(self, kernel_node: str) -> str | None:
        """The original node a profiled (possibly fused or renamed) node comes from."""
        if kernel_node in self.names:
            return kernel_node
        for suffix in _SUFFIXES:
            if kernel_node.endswith(suffix):
                tensor = kernel_node[: -len(suffix)]
                return self.producers.get(tensor)
        return self.producers.get(kernel_node)


def node_index(onnx_path: Path) -> NodeIndex:
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    producers = {out: n.name for n in model.graph.node for out in n.output if n.name}
    named = [n for n in model.graph.node if n.name]
    return NodeIndex((n.name for n in named), producers, {n.name: n.op_type for n in named},
                     {n.name: list(n.input) for n in named})
