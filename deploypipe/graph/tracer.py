"""The state the op handlers share while reading a graph: which tensor carries which
channel dim, which initializers mirror which dims, and which constants must be rewritten."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import onnx

from .space import ChannelSpace, Dim
from .view import GraphView


@dataclass(frozen=True)
class MemberDecl:
    """Initializer ``tensor``'s ``axis`` mirrors every element of ``dim``."""

    tensor: str
    axis: int
    role: str  # producer | consumer | param
    kind: str  # weight | bias | bn_* | in_* | gn_scale | gn_bias | slope | const
    dim: Dim
    node: str


@dataclass(frozen=True)
class Rewrite:
    """A shape-carrying constant or attribute that follows the channel count of ``dim``."""

    kind: str  # conv_group | group_norm | split | slice | reshape | resize
    node: onnx.NodeProto
    dim: Dim
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MacNode:
    """A node whose MACs scale with its input and output channels."""

    name: str
    op_type: str
    macs: int
    in_dim: Dim | None
    out_dim: Dim | None
    grouped: bool  # in-channels per group fixed: cost scales with output channels only


class Tracer:
    def __init__(self, view: GraphView):
        self.view = view
        self.space = ChannelSpace()
        self.track: dict[str, tuple[Dim, int]] = {}
        self.decls: list[MemberDecl] = []
        self.rewrites: list[Rewrite] = []
        self.mac_nodes: list[MacNode] = []
        self._mirrors: dict[tuple[str, int], Dim] = {}

    # -- tensors ----------------------------------------------------------------
    def dim(self, tensor: str | None) -> tuple[Dim, int] | None:
        return self.track.get(tensor) if tensor else None

    def set(self, tensor: str, dim: Dim, axis: int) -> None:
        self.track[tensor] = (dim, axis)

    def alias(self, out: str, inp: str, axis: int | None = None) -> None:
        t = self.track.get(inp)
        if t is not None and out:
            self.track[out] = (t[0], t[1] if axis is None else axis)

    def new(self, tensor: str | None, axis: int, n: int, block: int = 1, origin: str = "") -> Dim:
        dim = self.space.new_dim(n, block, origin)
        if tensor:
            self.track[tensor] = (dim, axis)
        return dim

    def frozen_dim(self, n: int, reason: str) -> Dim:
        dim = self.space.new_dim(n, 1, reason)
        dim.reasons.append(reason)
        return dim

    def freeze(self, tensor_or_dim: str | Dim | None, reason: str) -> None:
        if isinstance(tensor_or_dim, Dim):
            dim = tensor_or_dim
        else:
            t = self.dim(tensor_or_dim)
            if t is None:
                return
            dim = t[0]
        if reason not in dim.reasons:
            dim.reasons.append(reason)

    def freeze_inputs(self, node: onnx.NodeProto, reason: str) -> None:
        for name in node.input:
            self.freeze(name or None, reason)

    # -- members and rewrites ---------------------------------------------------
    def member(self, node: onnx.NodeProto, tensor: str, axis: int, role: str, kind: str, dim: Dim) -> bool:
        shape = self.view.shape(tensor)
        if shape is None or axis >= len(shape) or shape[axis] != dim.length:
            self.freeze(dim, f"{self.view.label(node)}: {tensor!r} does not match the channel count")
            return False
        key = (tensor, axis)
        if key in self._mirrors:
            self.space.link(self._mirrors[key], dim)  # a shared initializer ties its users
        else:
            self._mirrors[key] = dim
        self.decls.append(MemberDecl(tensor, axis, role, kind, dim, self.view.name(node)))
        return True

    def rewrite(self, kind: str, node: onnx.NodeProto, dim: Dim, **info: Any) -> None:
        self.rewrites.append(Rewrite(kind, node, dim, info))

    def mac(self, node: onnx.NodeProto, macs: int, in_dim: Dim | None, out_dim: Dim | None,
            grouped: bool = False) -> None:
        self.mac_nodes.append(MacNode(self.view.name(node), node.op_type, int(macs), in_dim, out_dim, grouped))
