"""Channel groups of an ONNX graph: which channels must be removed together.

``analyse(model)`` normalises the graph, runs every node through its op handler
(:mod:`deploypipe.graph.ops`), and turns the union-find classes of the channel space into
:class:`ChannelGroup` objects. A group's channel ``c`` occupies, in each member tensor,
the indices ``[offset + c*block, offset + (c+1)*block)`` along ``axis``.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property
from typing import Iterable, Mapping, Sequence

import numpy as np
import onnx

from ..errors import InputError
from . import ops
from .normalize import normalize
from .space import Dim
from .tracer import MacNode, MemberDecl, Rewrite, Tracer
from .view import GraphView

ROLES = ("producer", "consumer", "param")


@dataclass(frozen=True)
class Member:
    """A slice of a tensor that belongs to a group: channel c is
    ``[offset + c*block, offset + (c+1)*block)`` along ``axis``."""

    tensor: str
    axis: int
    role: str  # producer | consumer | param (initializers) or activation
    offset: int
    block: int
    kind: str = ""

    def indices(self, channels: Iterable[int]) -> np.ndarray:
        ch = np.asarray(list(channels), dtype=np.int64)
        return (self.offset + ch[:, None] * self.block + np.arange(self.block)[None, :]).reshape(-1)

    def to_dict(self) -> dict:
        return {"tensor": self.tensor, "axis": self.axis, "role": self.role,
                "offset": self.offset, "block": self.block, "kind": self.kind}


@dataclass(frozen=True)
class ChannelGroup:
    id: int
    width: int
    members: tuple[Member, ...]
    activations: tuple[Member, ...]
    frozen: bool
    reasons: tuple[str, ...]
    macs_per_channel: float
    params_per_channel: float
    layout: tuple[tuple[int, tuple[tuple[int, int], ...]], ...] = field(repr=False)
    """(dim id, runs of (first slot, slots per channel)) — where the group lives in each dim."""

    @property
    def prunable(self) -> bool:
        return not self.frozen

    def by_role(self, role: str) -> list[Member]:
        return [m for m in self.members if m.role == role]

    def to_dict(self, *, total_macs: int = 0, with_members: bool = True) -> dict:
        d = {"id": self.id, "width": self.width, "prunable": self.prunable,
             "frozen": self.frozen, "reason": "; ".join(self.reasons) or None,
             "macs_per_channel": self.macs_per_channel,
             "mac_share": (self.width * self.macs_per_channel / total_macs) if total_macs else 0.0,
             "params_per_channel": self.params_per_channel}
        if with_members:
            d["members"] = [m.to_dict() for m in self.members]
            d["activations"] = [m.to_dict() for m in self.activations]
        return d


@dataclass
class Analysis:
    """The channel groups of one (normalised) model, and what surgery needs to edit it."""

    model: onnx.ModelProto = field(repr=False)
    groups: list[ChannelGroup] = field(repr=False)
    dims: list[Dim] = field(repr=False)
    decls: list[MemberDecl] = field(repr=False)
    rewrites: list[Rewrite] = field(repr=False)
    mac_nodes: list[MacNode] = field(repr=False)
    macs: int
    params: int

    @cached_property
    def view(self) -> GraphView:
        return GraphView(self.model)

    @property
    def prunable(self) -> list[ChannelGroup]:
        return [g for g in self.groups if g.prunable]

    def group(self, gid: int) -> ChannelGroup:
        if not 0 <= gid < len(self.groups):
            raise InputError(f"there is no channel group {gid} (the model has groups 0-{len(self.groups) - 1})",
                             hint="see `deploypipe inspect` for the group ids")
        return self.groups[gid]

    def widths(self) -> np.ndarray:
        return np.array([g.width for g in self.groups], dtype=np.int64)

    @cached_property
    def cost(self) -> "CostModel":
        from .cost import CostModel

        return CostModel(self)

    def to_dict(self, *, with_members: bool = True) -> dict:
        return {"macs": self.macs, "params": self.params,
                "groups": [g.to_dict(total_macs=self.macs, with_members=with_members) for g in self.groups]}


def analyse(model: onnx.ModelProto, *, normalized: bool = False) -> Analysis:
    """Find every channel group of ``model`` (not modified)."""
    if not normalized:
        model = normalize(model)
    view = GraphView(model)
    tracer = Tracer(view)
    for node in _toposort(view):
        ops.handle(tracer, node)
    for name in view.outputs:
        tracer.freeze(name, f"it reaches graph output {name!r}")
    _freeze_shared_initializers(tracer)
    groups = _extract_groups(tracer)
    macs = sum(m.macs for m in tracer.mac_nodes)
    params = sum(int(np.prod(t.dims)) for t in model.graph.initializer
                 if t.data_type in _FLOAT_TYPES)
    return Analysis(model, groups, tracer.space.dims, tracer.decls, tracer.rewrites,
                    tracer.mac_nodes, macs, params)


_FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE,
                onnx.TensorProto.BFLOAT16}


def _toposort(view: GraphView) -> list[onnx.NodeProto]:
    known = set(view.inputs) | set(view.inits) | {""}
    pending = list(view.nodes)
    ordered: list[onnx.NodeProto] = []
    while pending:
        rest = []
        for node in pending:
            if all(i in known for i in node.input):
                ordered.append(node)
                known.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            missing = sorted({i for n in rest for i in n.input if i not in known})[:3]
            raise InputError(f"the ONNX graph reads tensors nothing produces ({', '.join(missing)})",
                             hint="the model is malformed; re-export it")
        pending = rest
    return ordered


def _freeze_shared_initializers(t: Tracer) -> None:
    declared: dict[str, set[str]] = defaultdict(set)
    dims: dict[str, list[Dim]] = defaultdict(list)
    for d in t.decls:
        declared[d.tensor].add(d.node)
        dims[d.tensor].append(d.dim)
    for tensor, nodes in declared.items():
        for user in t.view.consumers.get(tensor, []):
            if t.view.name(user) not in nodes:
                for dim in dims[tensor]:
                    t.freeze(dim, f"initializer {tensor!r} is also read by {t.view.label(user)}")


def _extract_groups(t: Tracer) -> list[ChannelGroup]:
    space = t.space
    roots = space.roots()
    slot_dim = np.empty(len(roots), dtype=np.int64)
    for d in space.dims:
        slot_dim[d.base:d.base + d.n] = d.id
    slots_of: dict[int, list[int]] = defaultdict(list)
    for s, r in enumerate(roots):
        slots_of[r].append(s)
    by_signature: dict[tuple, list[int]] = defaultdict(list)
    for r, slots in slots_of.items():
        counts: dict[int, int] = {}
        for s in slots:
            counts[int(slot_dim[s])] = counts.get(int(slot_dim[s]), 0) + 1
        by_signature[tuple(sorted(counts.items()))].append(r)

    tensors_of: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for name, (dim, axis) in t.track.items():
        tensors_of[dim.id].append((name, axis))
    decls_of: dict[int, list[MemberDecl]] = defaultdict(list)
    for decl in t.decls:
        decls_of[decl.dim.id].append(decl)

    raw = []
    for sig, class_roots in by_signature.items():
        first_dim = space.dims[sig[0][0]]
        first_slot = {r: min(s for s in slots_of[r] if slot_dim[s] == first_dim.id) for r in class_roots}
        class_roots.sort(key=first_slot.__getitem__)
        raw.append((sig, class_roots, min(first_slot.values())))
    raw.sort(key=lambda item: (item[0][0][0], item[2]))

    groups = []
    for sig, class_roots, _ in raw:
        group = _make_group(len(groups), sig, class_roots, slots_of, slot_dim, t, tensors_of, decls_of)
        if group is not None:
            groups.append(group)
    return groups


def _make_group(gid, sig, class_roots, slots_of, slot_dim, t: Tracer, tensors_of, decls_of):
    space = t.space
    width = len(class_roots)
    index_of = {r: i for i, r in enumerate(class_roots)}
    reasons: list[str] = []
    for dim_id, _ in sig:
        for reason in space.dims[dim_id].reasons:
            if reason not in reasons:
                reasons.append(reason)
    layout = []
    for dim_id, per_class in sig:
        dim = space.dims[dim_id]
        pairs = sorted((s - dim.base, index_of[r]) for r in class_roots for s in slots_of[r]
                       if slot_dim[s] == dim_id)
        runs = _runs(pairs, width)
        if runs is None:
            reasons.append(f"channels are permuted between {dim.origin or 'tensors'} and its neighbours "
                           "(e.g. by a channel shuffle between layers that tie them in another order)")
            runs = ()
        layout.append((dim_id, tuple(runs)))
    members, activations = [], []
    seen: set[tuple[str, int, int]] = set()
    for dim_id, runs in layout:
        dim = space.dims[dim_id]
        for offset, k in runs:
            for decl in decls_of.get(dim_id, []):
                key = (decl.tensor, decl.axis, offset * dim.block)
                if key not in seen:
                    seen.add(key)
                    members.append(Member(decl.tensor, decl.axis, decl.role, offset * dim.block,
                                          k * dim.block, decl.kind))
            for name, axis in tensors_of.get(dim_id, []):
                activations.append(Member(name, axis, "activation", offset * dim.block, k * dim.block))
    if not members:
        return None
    macs_pc, params_pc = _per_channel_costs(t, layout)
    return ChannelGroup(gid, width, tuple(members), tuple(activations), bool(reasons), tuple(reasons),
                        macs_pc, params_pc, tuple(layout))


def _runs(pairs: Sequence[tuple[int, int]], width: int) -> list[tuple[int, int]] | None:
    """Split (slot, class) pairs into runs ``offset + c*k + r``; None if not of that form."""
    runs = []
    i = 0
    while i < len(pairs):
        start, cls = pairs[i]
        if cls != 0:
            return None
        k = 1
        while i + k < len(pairs) and pairs[i + k] == (start + k, 0):
            k += 1
        span = width * k
        if i + span > len(pairs):
            return None
        for j in range(span):
            if pairs[i + j] != (start + j, j // k):
                return None
        runs.append((start, k))
        i += span
    return runs


def _per_channel_costs(t: Tracer, layout) -> tuple[float, float]:
    elems = {dim_id: sum(k for _, k in runs) * t.space.dims[dim_id].block for dim_id, runs in layout}
    macs = 0.0
    for m in t.mac_nodes:
        if m.out_dim is not None and m.out_dim.id in elems:
            macs += m.macs * elems[m.out_dim.id] / m.out_dim.length
        if not m.grouped and m.in_dim is not None and m.in_dim.id in elems:
            macs += m.macs * elems[m.in_dim.id] / m.in_dim.length
    params = 0.0
    seen = set()
    for d in t.decls:
        if d.dim.id in elems and (d.tensor, d.axis) not in seen:
            seen.add((d.tensor, d.axis))
            size = int(np.prod(t.view.shape(d.tensor)))
            params += size * elems[d.dim.id] / d.dim.length
    return macs, params


def check_drop(analysis: Analysis, drop: Mapping[int, Sequence[int]]) -> dict[int, np.ndarray]:
    """Validate a drop list ``{group id: channel indices}``; one sentence per mistake."""
    clean: dict[int, np.ndarray] = {}
    for gid, channels in drop.items():
        group = analysis.group(int(gid))
        idx = np.unique(np.asarray(list(channels), dtype=np.int64))
        if idx.size == 0:
            continue
        if group.frozen:
            raise InputError(f"channel group {group.id} is frozen and cannot lose channels "
                             f"({group.reasons[0]})", hint="remove it from the drop list")
        if idx.min() < 0 or idx.max() >= group.width:
            raise InputError(f"channel {int(idx.max() if idx.max() >= group.width else idx.min())} is out of "
                             f"range for group {group.id}, which has {group.width} channels",
                             hint=f"use indices 0-{group.width - 1}")
        if idx.size >= group.width:
            raise InputError(f"the drop list removes every channel of group {group.id}",
                             hint="keep at least one channel in each group")
        clean[group.id] = idx
    return clean
