"""Per-layer times mapped back to ONNX nodes, and from nodes to channel groups.

TensorRT names an engine layer after the ONNX nodes it was built from: ``A + B`` for a
vertical fusion (a Conv with its BatchNorm and ReLU), ``A || B`` for a horizontal one,
``PWN(A, PWN(B))`` for fused point-wise ops, ``{ForeignNode[A...B]}`` for a Myelin region
that runs every node from A to B, ``T copy`` for a concatenation copy of tensor T, and
``Reformatting CopyNode for ...`` for layout conversions it inserted (those map to no node).
:func:`trt_layer_nodes` recovers the ONNX nodes of such a name; :func:`with_groups` adds the
channel groups those nodes read or write, so latency tables speak in groups. A PyTorch
layer is a module name, which is the prefix of its parameters' ONNX initializer names.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

from .base import LayerTime

if TYPE_CHECKING:  # onnx and the analysis load with the model, not with this module
    import onnx

    from ..graph import Analysis

_FOREIGN = re.compile(r"\{ForeignNode\[(.*?)\.\.\.(.*?)\]\}")
_SEPARATORS = re.compile(r" \+ | \|\| |, |PWN\(|\)|\{ForeignNode\[|\]\}")
_INSERTED = ("Reformatting CopyNode", "(Unnamed Layer")


@dataclass(frozen=True)
class GraphIndex:
    """Node names in graph order, their op types and tensors, and each tensor's producer."""

    order: tuple[str, ...]
    ops: dict[str, str]
    tensors: dict[str, tuple[str, ...]]
    producers: dict[str, str]

    @classmethod
    def from_model(cls, model: "onnx.ModelProto") -> "GraphIndex":
        nodes = [n for n in model.graph.node if n.name]
        return cls(order=tuple(n.name for n in nodes), ops={n.name: n.op_type for n in nodes},
                   tensors={n.name: tuple(t for t in [*n.input, *n.output] if t) for n in nodes},
                   producers={t: n.name for n in nodes for t in n.output if t})

    @classmethod
    def from_path(cls, path: str | Path) -> "GraphIndex":
        import onnx

        return cls.from_model(onnx.load(str(path), load_external_data=False))

    def origin(self, token: str) -> str | None:
        """The node a name token stands for: a node name, or a tensor its producer wrote."""
        token = token.strip()
        if token.endswith(" copy"):
            token = token[: -len(" copy")]
        if token in self.ops:
            return token
        return self.producers.get(token)

    def span(self, first: str, last: str) -> list[str]:
        """Every node from ``first`` to ``last`` in graph order (a Myelin region)."""
        a, b = self.origin(first), self.origin(last)
        if a is None or b is None:
            return [n for n in (a, b) if n]
        i, j = sorted((self.order.index(a), self.order.index(b)))
        return list(self.order[i: j + 1])


def trt_layer_nodes(layer_name: str, index: GraphIndex) -> tuple[str, ...]:
    """The ONNX nodes a TensorRT layer name covers, in the order the name lists them."""
    if layer_name.startswith(_INSERTED):
        return ()
    found: list[str] = []
    for first, last in _FOREIGN.findall(layer_name):
        found += index.span(first, last)
    rest = _FOREIGN.sub(" + ", layer_name)
    for token in _SEPARATORS.split(rest):
        node = index.origin(token) if token.strip() else None
        if node is not None:
            found.append(node)
    return tuple(dict.fromkeys(found))


def trt_op_type(layer_name: str, nodes: Sequence[str], index: GraphIndex) -> str:
    """An op type for a TensorRT layer: its first node's, or what TensorRT made it."""
    if nodes:
        return index.ops[nodes[0]]
    if layer_name.startswith("Reformatting"):
        return "Reformat"
    return "Myelin" if "ForeignNode" in layer_name or "myl" in layer_name else "TensorRT"


def node_groups(analysis: "Analysis") -> dict[str, tuple[int, ...]]:
    """ONNX node name -> ids of the channel groups whose tensors the node reads or writes."""
    by_tensor: dict[str, set[int]] = {}
    for group in analysis.groups:
        for member in (*group.members, *group.activations):
            by_tensor.setdefault(member.tensor, set()).add(group.id)
    out = {}
    for node in analysis.model.graph.node:
        ids = set().union(*(by_tensor.get(t, set()) for t in [*node.input, *node.output]))
        out[node.name] = tuple(sorted(ids))
    return out


def module_groups(analysis: "Analysis", module: str) -> tuple[int, ...]:
    """Channel groups of a PyTorch module: those holding an initializer named ``module.*``."""
    prefix = module + "."
    return tuple(sorted(g.id for g in analysis.groups
                        if any(m.tensor.startswith(prefix) for m in g.members)))


def with_groups(layers: Iterable[LayerTime], analysis: "Analysis") -> list[LayerTime]:
    """``layers`` with ``groups`` filled from their ONNX nodes (or module names)."""
    per_node = node_groups(analysis)
    out = []
    for layer in layers:
        if layer.onnx_nodes:
            ids = set().union(*(per_node.get(n, ()) for n in layer.onnx_nodes))
        else:
            ids = set(module_groups(analysis, layer.name))
        out.append(dataclasses.replace(layer, groups=tuple(sorted(ids))))
    return out
