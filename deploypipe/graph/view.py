"""A read-only index over an ONNX graph: producers, consumers, constants and shapes."""
from __future__ import annotations

from collections import defaultdict
from functools import cached_property

import numpy as np
import onnx
from onnx import helper, numpy_helper

Shape = tuple  # of int (static), str (symbolic) or None (unknown)


class GraphView:
    def __init__(self, model: onnx.ModelProto):
        self.model = model
        g = model.graph
        self.nodes: list[onnx.NodeProto] = list(g.node)
        self.inits: dict[str, onnx.TensorProto] = {t.name: t for t in g.initializer}
        self.inputs = [i.name for i in g.input if i.name not in self.inits]
        self.outputs = [o.name for o in g.output]
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        self.names: dict[int, str] = {}
        for idx, node in enumerate(self.nodes):
            self.names[id(node)] = node.name or f"{node.op_type}_{idx}"
            for o in node.output:
                if o:
                    self.producer[o] = node
            for i in node.input:
                if i:
                    self.consumers[i].append(node)
        self._arrays: dict[str, np.ndarray] = {}
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)

    @cached_property
    def shapes(self) -> dict[str, Shape]:
        g = self.model.graph
        shapes: dict[str, Shape] = {}
        for vi in list(g.input) + list(g.output) + list(g.value_info):
            t = vi.type.tensor_type
            if t.HasField("shape"):
                shapes[vi.name] = tuple(_dim(d) for d in t.shape.dim)
        for name, t in self.inits.items():
            shapes[name] = tuple(int(d) for d in t.dims)
        return shapes

    def label(self, node: onnx.NodeProto) -> str:
        return f"{node.op_type} node {self.names[id(node)]!r}"

    def name(self, node: onnx.NodeProto) -> str:
        return self.names[id(node)]

    def shape(self, tensor: str) -> Shape | None:
        return self.shapes.get(tensor)

    def rank(self, tensor: str) -> int | None:
        s = self.shapes.get(tensor)
        return None if s is None else len(s)

    def is_const(self, tensor: str) -> bool:
        return tensor in self.inits

    def const(self, tensor: str) -> np.ndarray | None:
        if tensor not in self.inits:
            return None
        if tensor not in self._arrays:
            self._arrays[tensor] = numpy_helper.to_array(self.inits[tensor])
        return self._arrays[tensor]

    @staticmethod
    def attr(node: onnx.NodeProto, name: str, default=None):
        for a in node.attribute:
            if a.name == name:
                return helper.get_attribute_value(a)
        return default

    def input(self, node: onnx.NodeProto, i: int) -> str | None:
        return node.input[i] if len(node.input) > i and node.input[i] else None


def _dim(d) -> int | str | None:
    if d.HasField("dim_value"):
        return int(d.dim_value)
    if d.HasField("dim_param"):
        return d.dim_param
    return None


def static_prod(dims) -> int | None:
    p = 1
    for d in dims:
        if not isinstance(d, int):
            return None
        p *= d
    return p
