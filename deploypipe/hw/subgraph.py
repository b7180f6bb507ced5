"""The isolated sub-graph of one channel group, and the whole model at a fixed batch.

A group's sub-graph holds every node that reads or writes one of its activation tensors:
the producers (Conv, and the BatchNorm, ReLU and Add that carry the channels) and the
consumers (the next Conv, or the pooling and Gemm of a head). Its inputs are the tensors
those nodes read from outside, with the static shapes they have in the real model at the
target's batch, so the sub-graph runs the same kernels at the same sizes as in the model.
Inside it the group is prunable (no graph input or output carries its channels), so the
existing ``shrink`` cuts it to any width.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import onnx
from onnx import helper

from ..backends.feeds import dynamic_dims_hint
from ..errors import InputError
from ..graph import Analysis, ChannelGroup, analyse, shrink
from ..graph.normalize import infer_inplace
from ..graph.view import GraphView

_FLOAT = onnx.TensorProto.FLOAT
_FLOATS = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE,
           onnx.TensorProto.BFLOAT16}


def with_batch(model: onnx.ModelProto, batch: int,
               sample_shape: tuple[int, ...] | None = None) -> onnx.ModelProto:
    """A copy whose graph inputs have batch ``batch`` (and ``sample_shape`` where the model
    leaves a dimension dynamic), shapes inferred again: every tensor gets static dims."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = {t.name for t in out.graph.initializer}
    for vi in out.graph.input:
        if vi.name in inits:
            continue
        dims = vi.type.tensor_type.shape.dim
        for i, d in enumerate(dims):
            if i == 0:
                d.Clear()
                d.dim_value = batch
            elif not d.HasField("dim_value"):
                if sample_shape is None or len(sample_shape) != len(dims) - 1:
                    raise InputError(f"input {vi.name!r} has a dynamic dimension {i}",
                                     hint=dynamic_dims_hint(vi.name))
                d.Clear()
                d.dim_value = int(sample_shape[i - 1])
    for vi in out.graph.output:
        if vi.type.tensor_type.HasField("shape") and vi.type.tensor_type.shape.dim:
            vi.type.tensor_type.shape.dim[0].Clear()
            vi.type.tensor_type.shape.dim[0].dim_value = batch
    del out.graph.value_info[:]
    infer_inplace(out)
    return out


@dataclass
class GroupSubgraph:
    """One group's sub-graph; ``at_width(w)`` is the same sub-graph with the group cut to ``w``.
    ``whole`` marks the fallback for a group that cannot be isolated: the whole model."""

    gid: int  # the group's id in the full model
    width: int
    model: onnx.ModelProto
    node_names: tuple[str, ...]
    key: tuple[str, int, int]  # (tensor, axis, offset) of the group's first member
    whole: bool = False

    @cached_property
    def analysis(self) -> Analysis:
        return analyse(self.model, normalized=True)

    @cached_property
    def local_id(self) -> int:
        """The same group's id inside the sub-graph (found by its first member)."""
        return _local_group(self.analysis, self.key, self.width, self.gid)

    def at_width(self, width: int) -> onnx.ModelProto:
        if not 1 <= width <= self.width:
            raise InputError(f"width {width} is outside 1-{self.width} for group {self.gid}")
        if width == self.width:
            return self.model
        return shrink(self.analysis, {self.local_id: np.arange(width, self.width)})


def group_subgraph(static: onnx.ModelProto, group: ChannelGroup, view: GraphView | None = None) -> GroupSubgraph:
    """Cut ``group``'s sub-graph out of ``static`` (a model with static shapes, see
    :func:`with_batch`; its group ids are those of the analysis ``group`` comes from)."""
    view = view or GraphView(static)
    tensors = {m.tensor for m in group.activations}
    nodes = [n for n in view.nodes if tensors & set(n.output) or tensors & set(n.input)]
    nodes = _with_shape_ancestors(view, nodes)
    model = _graph_of(static, view, nodes, f"group{group.id}")
    return GroupSubgraph(group.id, group.width, model, tuple(view.name(n) for n in nodes), member_key(group))


def whole_model(static: onnx.ModelProto, group: ChannelGroup) -> GroupSubgraph:
    """The fallback for a group that its sub-graph cannot isolate: time the whole model."""
    return GroupSubgraph(group.id, group.width, static, (), member_key(group), whole=True)


def member_key(group: ChannelGroup) -> tuple[str, int, int]:
    first = group.members[0]
    return (first.tensor, first.axis, first.offset)


def _with_shape_ancestors(view: GraphView, nodes: list[onnx.NodeProto]) -> list[onnx.NodeProto]:
    """Add the producers of non-float inputs (shape arithmetic), which random data cannot feed."""
    types = _elem_types(view)
    chosen = {id(n) for n in nodes}
    stack = list(nodes)
    while stack:
        node = stack.pop()
        for name in node.input:
            producer = view.producer.get(name)
            if producer is None or id(producer) in chosen or types.get(name, _FLOAT) in _FLOATS:
                continue
            chosen.add(id(producer))
            stack.append(producer)
    return [n for n in view.nodes if id(n) in chosen]  # the model's (topological) order


def _graph_of(static: onnx.ModelProto, view: GraphView, nodes: list[onnx.NodeProto], name: str) -> onnx.ModelProto:
    types = _elem_types(view)
    produced = {o for n in nodes for o in n.output if o}
    read = [i for n in nodes for i in n.input if i]
    inputs, inits, seen = [], [], set()
    for tensor in read:
        if tensor in produced or tensor in seen:
            continue
        seen.add(tensor)
        if tensor in view.inits:
            inits.append(view.inits[tensor])
        else:
            inputs.append(_value_info(view, types, tensor))
    consumed_inside = set(read)
    graph_outputs = set(view.outputs)
    outputs = [_value_info(view, types, o) for n in nodes for o in n.output
               if o and (o not in consumed_inside or o in graph_outputs)]
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=list(static.opset_import))
    model.ir_version = static.ir_version
    infer_inplace(model)
    return model


def _value_info(view: GraphView, types: dict[str, int], tensor: str) -> onnx.ValueInfoProto:
    shape = view.shape(tensor)
    if shape is None or not all(isinstance(d, int) for d in shape):
        raise InputError(f"tensor {tensor!r} has no static shape {shape}",
                         hint="give the target profile an input_shape so every shape is known")
    return helper.make_tensor_value_info(tensor, types.get(tensor, _FLOAT), list(shape))


def _elem_types(view: GraphView) -> dict[str, int]:
    g = view.model.graph
    types = {vi.name: vi.type.tensor_type.elem_type for vi in list(g.value_info) + list(g.input) + list(g.output)}
    types.update({name: t.data_type for name, t in view.inits.items()})
    return types


def _local_group(analysis: Analysis, key: tuple, width: int, gid: int) -> int:
    for g in analysis.groups:
        if any((m.tensor, m.axis, m.offset) == key for m in g.members):
            if g.width != width or g.frozen:
                break
            return g.id
    raise InputError(f"group {gid} cannot be isolated in its own sub-graph",
                     hint="measure it on the whole model (the latency table does this by itself)")
