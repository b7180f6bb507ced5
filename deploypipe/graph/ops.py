"""Per-op handlers: how each ONNX op moves, creates, ties or blocks channels.

A handler reads a node and tells the :class:`Tracer` which channel dim each output carries
(``alias``/``new``), which channels must go together (``space.link``/``tie``), which
initializer slices belong to a channel (``member``), which constants must follow the
channel count (``rewrite``), and which channels it cannot reason about (``freeze``).
An op without a handler freezes the channels of its inputs, naming itself as the reason.
Users extend the table with ``@register_op("MyOp")``.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import onnx

from .space import Dim
from .tracer import Tracer
from .view import static_prod

Handler = Callable[[Tracer, onnx.NodeProto], None]
OP_HANDLERS: dict[str, Handler] = {}

INT_MAX = 2**62


def register_op(*op_types: str) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        for op in op_types:
            OP_HANDLERS[op] = fn
        return fn

    return deco


def handle(t: Tracer, node: onnx.NodeProto) -> None:
    handler = OP_HANDLERS.get(node.op_type) if node.domain in ("", "ai.onnx") else None
    (handler or unsupported)(t, node)


def unsupported(t: Tracer, node: onnx.NodeProto, why: str = "is not understood by the channel analysis") -> None:
    t.freeze_inputs(node, f"{t.view.label(node)} {why}")


# -- ops that keep every channel where it is ------------------------------------------
ELEMENTWISE = (
    "Relu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "LeakyRelu", "Elu", "Selu", "Celu",
    "ThresholdedRelu", "Tanh", "Softplus", "Softsign", "Mish", "Gelu", "Erf", "Exp", "Log",
    "Sqrt", "Abs", "Neg", "Reciprocal", "Floor", "Ceil", "Round", "Sign", "Sin", "Cos", "Not",
    "IsNaN", "IsInf", "Cast", "Identity", "Dropout",
)
POOLS = ("MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool")


@register_op(*ELEMENTWISE, *POOLS)
def keep_channels(t: Tracer, node: onnx.NodeProto) -> None:
    t.alias(node.output[0], node.input[0])


@register_op("Shape", "Size")
def reads_shape_only(t: Tracer, node: onnx.NodeProto) -> None:
    """Shape values follow the pruned graph by themselves; nothing to tie or freeze."""


@register_op("Resize", "Upsample")
def resize(t: Tracer, node: onnx.NodeProto) -> None:
    tracked = t.dim(node.input[0])
    if tracked is None:
        return
    dim, axis = tracked
    sizes = t.view.input(node, 3) if node.op_type == "Resize" else None
    if sizes is not None:
        values = t.view.const(sizes)
        if values is None:
            return unsupported(t, node, "takes its output sizes from a computed tensor")
        t.rewrite("resize", node, dim, axis=axis, input=sizes)
    t.alias(node.output[0], node.input[0])


@register_op("Pad")
def pad(t: Tracer, node: onnx.NodeProto) -> None:
    tracked = t.dim(node.input[0])
    if tracked is None:
        return
    pads = t.view.attr(node, "pads")
    if pads is None and t.view.input(node, 1):
        pads = t.view.const(node.input[1])
        if pads is None:
            return unsupported(t, node, "takes its pads from a computed tensor")
    if t.view.input(node, 3):
        return unsupported(t, node, "pads only some axes")
    rank = t.view.rank(node.input[0])
    axis = tracked[1]
    pads = [int(p) for p in (pads if pads is not None else [])]
    if rank and len(pads) == 2 * rank and (pads[axis] or pads[axis + rank]):
        return unsupported(t, node, "pads the channel axis")
    t.alias(node.output[0], node.input[0])


# -- ops that create channels ----------------------------------------------------------
@register_op("Conv", "ConvTranspose")
def conv(t: Tracer, node: onnx.NodeProto) -> None:
    v = t.view
    x, w, b = node.input[0], node.input[1], v.input(node, 2)
    if not v.is_const(w) or (b is not None and not v.is_const(b)):
        return unsupported(t, node, "has weights that are not constants")
    wshape = v.shape(w)
    groups = int(v.attr(node, "group", 1))
    transpose = node.op_type == "ConvTranspose"
    cin = wshape[0] if transpose else wshape[1] * groups
    cout = wshape[1] * groups if transpose else wshape[0]
    out = t.new(node.output[0], 1, cout, origin=v.label(node))
    incoming = _input_dim(t, node, x, axis=1)
    out_axis, in_axis = (1, 0) if transpose else (0, 1)
    fixed_groups = groups > 1 and keeps_groups(groups, cin // groups, cout // groups)
    if groups == 1:
        t.member(node, w, out_axis, "producer", "weight", out)
        if incoming is not None:
            t.member(node, w, in_axis, "consumer", "weight", incoming)
    elif fixed_groups:
        _grouped_positions(t, node, w, groups, incoming, out, transpose)
    elif incoming is None:
        t.freeze(out, f"{v.label(node)} is a grouped convolution whose input channels are not tracked")
    else:
        a, b_per = cin // groups, cout // groups
        for k in range(groups):
            t.space.tie(incoming, (k * a, (k + 1) * a), out, (k * b_per, (k + 1) * b_per))
        # one channel of the group = one convolution group; its weight rows follow it
        t.member(node, w, 0, "producer", "weight", incoming if transpose else out)
        t.rewrite("conv_group", node, out, unit=b_per)
    if b is not None:
        t.member(node, b, 0, "producer", "bias", out)
    grouped = groups > 1 and not fixed_groups
    t.mac(node, _conv_macs(t, node, wshape, transpose), incoming, out, grouped=grouped)


def keeps_groups(groups: int, in_per_group: int, out_per_group: int) -> bool:
    """Whether a grouped convolution is pruned by positions inside its groups (the group
    count stays) rather than by whole groups (the group count follows): the finer of the
    two units wins. ShuffleNet's 1x1 convs (4 groups of 34 channels) lose the same
    positions in every group; a depthwise conv, or ResNeXt's 32 groups of 4, loses whole
    groups. :mod:`deploypipe.models.resize` applies the same rule to PyTorch layers."""
    return min(in_per_group, out_per_group) > groups


def _grouped_positions(t: Tracer, node: onnx.NodeProto, w: str, groups: int, incoming: Dim | None,
                       out: Dim, transpose: bool) -> None:
    """A grouped conv whose group count stays: channel ``j`` of every group goes together
    (so each group keeps as many channels), on the input side and on the output side."""
    label = t.view.label(node)
    cout_pg = out.length // groups
    per_out = t.new(None, 0, cout_pg, origin=f"{label} (output position in each group)")
    for k in range(groups):
        t.space.link(out, per_out, a_start=k * cout_pg, length=cout_pg)
    t.member(node, w, 1 if transpose else 0, "producer", "weight", per_out if transpose else out)
    if incoming is None:
        return
    cin_pg = incoming.length // groups
    per_in = t.new(None, 0, cin_pg, origin=f"{label} (input position in each group)")
    for k in range(groups):
        t.space.link(incoming, per_in, a_start=k * cin_pg, length=cin_pg)
    t.member(node, w, 0 if transpose else 1, "consumer", "weight", incoming if transpose else per_in)


def _conv_macs(t: Tracer, node: onnx.NodeProto, wshape: tuple, transpose: bool) -> int:
    shape = t.view.shape(node.input[0] if transpose else node.output[0])
    spatial = static_prod(shape[2:]) if shape else None
    if spatial is None:
        return 0
    # Conv: out positions * Cout * Cin/g * k; ConvTranspose: in positions * Cin * Cout/g * k
    return spatial * int(np.prod(wshape))


@register_op("Gemm")
def gemm(t: Tracer, node: onnx.NodeProto) -> None:
    v = t.view
    a, b, c = node.input[0], node.input[1], v.input(node, 2)
    if not v.is_const(b) or v.attr(node, "transA", 0) or (c is not None and not v.is_const(c)):
        return unsupported(t, node, "is not an input-by-constant-weight product")
    wshape = v.shape(b)
    trans_b = int(v.attr(node, "transB", 0))
    n_out = wshape[0] if trans_b else wshape[1]
    out = t.new(node.output[0], 1, n_out, origin=v.label(node))
    t.member(node, b, 0 if trans_b else 1, "producer", "weight", out)
    incoming = _input_dim(t, node, a, axis=1)
    if incoming is not None:
        t.member(node, b, 1 if trans_b else 0, "consumer", "weight", incoming)
    if c is not None:
        bias_shape = v.shape(c) or ()
        if len(bias_shape) >= 1 and bias_shape[-1] == n_out and n_out > 1:
            t.member(node, c, len(bias_shape) - 1, "producer", "bias", out)
    t.mac(node, int(np.prod(wshape)), incoming, out)


@register_op("MatMul")
def matmul(t: Tracer, node: onnx.NodeProto) -> None:
    v = t.view
    a, b = node.input
    wshape, rank = v.shape(b) if v.is_const(b) else None, v.rank(a)
    if wshape is None or len(wshape) != 2 or rank is None or rank < 2:
        return unsupported(t, node, "is not an input-by-constant-weight product")
    tracked = t.dim(a)
    if tracked is not None and tracked[1] != rank - 1:
        if tracked[1] == rank - 2:
            return unsupported(t, node, "contracts the channel axis from the left")
        t.alias(node.output[0], a)  # channels sit on an axis the product leaves alone
        return
    incoming = tracked[0] if tracked else None
    if incoming is not None:
        t.member(node, b, 0, "consumer", "weight", incoming)
    out = t.new(node.output[0], rank - 1, wshape[1], origin=v.label(node))
    t.member(node, b, 1, "producer", "weight", out)
    shape = v.shape(node.output[0])
    rows = static_prod(shape[1:-1]) if shape else None
    t.mac(node, (rows or 1) * int(np.prod(wshape)), incoming, out)


def _input_dim(t: Tracer, node: onnx.NodeProto, tensor: str, axis: int) -> Dim | None:
    tracked = t.dim(tensor)
    if tracked is None:
        return None
    dim, at = tracked
    if at != axis:
        t.freeze(dim, f"{t.view.label(node)} reads channels on axis {axis} but they sit on axis {at}")
        return None
    return dim


# -- ops with per-channel parameters ---------------------------------------------------
@register_op("BatchNormalization", "InstanceNormalization")
def normalization(t: Tracer, node: onnx.NodeProto) -> None:
    tracked = t.dim(node.input[0])
    if len([o for o in node.output if o]) > 1:
        return unsupported(t, node, "is in training mode")
    if tracked is None:
        return
    dim, axis = tracked
    if axis != 1:
        return unsupported(t, node, "normalises an axis that does not carry the channels")
    kinds = ("bn_scale", "bn_bias", "bn_mean", "bn_var") if node.op_type == "BatchNormalization" else ("in_scale", "in_bias")
    for name, kind in zip(node.input[1:], kinds):
        if not t.view.is_const(name):
            t.freeze(dim, f"{t.view.label(node)} takes {kind.split('_')[1]} from {name!r}, which is not a constant")
            continue
        t.member(node, name, 0, "param", kind, dim)
    t.alias(node.output[0], node.input[0])


@register_op("PRelu")
def prelu(t: Tracer, node: onnx.NodeProto) -> None:
    _broadcast(t, node, [node.input[0], node.input[1]], kind="slope")


@register_op("Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Mean", "Pow")
def broadcast_binary(t: Tracer, node: onnx.NodeProto) -> None:
    inputs = list(node.input[:1]) if node.op_type == "Pow" else list(node.input)
    if node.op_type == "Pow":
        exponent = node.input[1]
        shape = t.view.shape(exponent)
        if not t.view.is_const(exponent) or (shape and static_prod(shape) != 1):
            return unsupported(t, node, "has a per-element exponent")
    _broadcast(t, node, inputs, kind="const")


def _broadcast(t: Tracer, node: onnx.NodeProto, inputs: list[str], kind: str) -> None:
    """Element-wise op with numpy broadcasting: tracked inputs on the same output axis are
    the same channels; constants with a full channel extent are per-channel parameters."""
    v = t.view
    out = node.output[0]
    out_rank = v.rank(out) or max((v.rank(i) or 0) for i in inputs)
    placed: list[tuple[Dim, int]] = []
    for name in inputs:
        tracked = t.dim(name)
        if tracked is not None:
            rank = v.rank(name)
            if rank is None:
                return unsupported(t, node, "has an input of unknown rank")
            placed.append((tracked[0], tracked[1] + out_rank - rank))
    if not placed:
        return
    axes = {a for _, a in placed}
    if len(axes) > 1:
        return unsupported(t, node, "combines channels that sit on different axes")
    (out_axis,) = axes
    dim = placed[0][0]
    for other, _ in placed[1:]:
        if other.length != dim.length:
            return unsupported(t, node, "combines channel axes of different lengths")
        t.space.link(dim, other)
    for name in inputs:
        if t.dim(name) is not None:
            continue
        shape = v.shape(name)
        if shape is None:
            return unsupported(t, node, f"has input {name!r} of unknown shape")
        axis = out_axis - (out_rank - len(shape))
        extent = shape[axis] if axis >= 0 else 1
        if extent == 1:
            continue
        if extent == dim.length and v.is_const(name):
            t.member(node, name, axis, "param", kind, dim)
        else:
            for d, _ in placed:
                t.freeze(d, f"{v.label(node)} mixes the channels with {name!r}, whose channel layout is unknown")
    t.set(out, dim, out_axis)


# -- ops that split, join or reshape the channel axis -------------------------------------
@register_op("Concat")
def concat(t: Tracer, node: onnx.NodeProto) -> None:
    v = t.view
    rank = v.rank(node.output[0])
    if rank is None:
        return unsupported(t, node, "has an output of unknown rank")
    axis = int(v.attr(node, "axis")) % rank
    tracked = [t.dim(i) for i in node.input]
    if not any(tracked):
        return
    channel_axes = {d[1] for d in tracked if d}
    if channel_axes != {axis}:
        if len(channel_axes) == 1 and all(tracked):
            first = tracked[0][0]
            for d, _ in tracked[1:]:
                t.space.link(first, d)
            t.set(node.output[0], first, channel_axes.pop())
            return
        return unsupported(t, node, "joins tensors whose channels sit on different axes")
    extents = []
    for name, d in zip(node.input, tracked):
        shape = v.shape(name)
        extent = d[0].length if d else (shape[axis] if shape and isinstance(shape[axis], int) else None)
        if extent is None:
            return unsupported(t, node, f"has input {name!r} of unknown size")
        extents.append(extent)
    out = t.new(node.output[0], axis, sum(extents), origin=v.label(node))
    offset = 0
    for name, d, extent in zip(node.input, tracked, extents):
        src = d[0] if d else t.frozen_dim(extent, f"{v.label(node)} joins {name!r}, whose channels are not tracked")
        t.space.link(out, src, a_start=offset, length=extent)
        offset += extent


def _on_tracked_input(handler: Callable[[Tracer, onnx.NodeProto, Dim, int, int | None], None]) -> Handler:
    """A handler that runs only when the node's first input carries tracked channels, given
    that dim, its axis and the input's rank (an untracked input moves no channels)."""

    def run(t: Tracer, node: onnx.NodeProto) -> None:
        tracked = t.dim(node.input[0])
        if tracked is not None:
            handler(t, node, *tracked, t.view.rank(node.input[0]))

    run.__name__, run.__doc__ = handler.__name__, handler.__doc__
    return run


@register_op("Split")
@_on_tracked_input
def split(t: Tracer, node: onnx.NodeProto, dim: Dim, ch_axis: int, rank: int | None) -> None:
    v = t.view
    axis = int(v.attr(node, "axis", 0)) % rank
    outputs = [o for o in node.output]
    if axis != ch_axis:
        for o in outputs:
            t.alias(o, node.input[0])
        return
    sizes = _split_sizes(t, node, dim.length, len(outputs))
    if sizes is None:
        return unsupported(t, node, "has split sizes that are not constants")
    offset, parts = 0, []
    for o, size in zip(outputs, sizes):
        part = t.new(o, axis, size, origin=v.label(node))
        t.space.link(dim, part, a_start=offset, length=size)
        parts.append(part)
        offset += size
    t.rewrite("split", node, dim, parts=parts)


def _split_sizes(t: Tracer, node: onnx.NodeProto, length: int, n_out: int) -> list[int] | None:
    sizes = t.view.attr(node, "split")
    if sizes is None and t.view.input(node, 1):
        arr = t.view.const(node.input[1])
        if arr is None:
            return None
        sizes = arr.tolist()
    if sizes is None:
        chunk = -(-length // n_out)
        sizes = [min(chunk, length - i * chunk) for i in range(n_out)]
    return [int(s) for s in sizes]


@register_op("Slice")
@_on_tracked_input
def slice_(t: Tracer, node: onnx.NodeProto, dim: Dim, ch_axis: int, rank: int | None) -> None:
    v = t.view
    params = _slice_params(t, node)
    if params is None:
        return unsupported(t, node, "has bounds that are not constants")
    starts, ends, axes, steps = params
    axes = [a % rank for a in axes]
    if ch_axis not in axes:
        t.alias(node.output[0], node.input[0])
        return
    i = axes.index(ch_axis)
    if steps[i] != 1:
        return unsupported(t, node, "slices the channel axis with a step")
    start, end = _clamp(starts[i], dim.length), _clamp(ends[i], dim.length)
    if end <= start:
        return unsupported(t, node, "selects no channels")
    part = t.new(node.output[0], ch_axis, end - start, origin=v.label(node))
    t.space.link(dim, part, a_start=start, length=end - start)
    t.rewrite("slice", node, dim, index=i, start=start, end=end)


def _slice_params(t: Tracer, node: onnx.NodeProto):
    v = t.view
    if v.opset < 10:
        starts, ends = v.attr(node, "starts"), v.attr(node, "ends")
        axes = v.attr(node, "axes", list(range(len(starts))))
        return list(starts), list(ends), list(axes), [1] * len(starts)
    arrays = []
    for i in range(1, 5):
        name = v.input(node, i)
        if name is None:
            arrays.append(None)
            continue
        value = v.const(name)
        if value is None:
            return None
        arrays.append([int(x) for x in value.reshape(-1)])
    starts, ends, axes, steps = arrays
    axes = axes if axes is not None else list(range(len(starts)))
    steps = steps if steps is not None else [1] * len(starts)
    return starts, ends, axes, steps


def _clamp(x: int, length: int) -> int:
    if x < 0:
        x += length
    return max(0, min(x, length))


@register_op("Flatten", "Reshape", "Squeeze", "Unsqueeze")
def reshape(t: Tracer, node: onnx.NodeProto) -> None:
    """A reshape the channels can be followed through: one that keeps each channel's
    elements together (Flatten into a Gemm makes channel c a block of h*w features), one
    that merges fixed axes into the channel axis, or one that factors the channel axis
    (a channel shuffle's [N,g,C/g,H,W], GroupNorm's [N,G,C/G*H*W]). Other reshapes freeze."""
    v = t.view
    tracked = t.dim(node.input[0])
    if tracked is None:
        return
    dim, axis = tracked
    src, dst = v.shape(node.input[0]), v.shape(node.output[0])
    if src is None or dst is None:
        return unsupported(t, node, "has no shape information (run shape inference or export with static shapes)")
    trailing = static_prod(src[axis + 1:])
    if trailing is None:
        return unsupported(t, node, "has a dynamic spatial size")
    shape = _ReshapeShapes(src, dst, axis, trailing, dim)
    found = shape.keep() or shape.merge() or shape.split()
    if found is None:
        return unsupported(t, node, "splits each channel across axes")
    j, build = found
    out = build(t, node)
    if node.op_type == "Reshape":
        t.rewrite("reshape", node, out, axis=j)


class _ReshapeShapes:
    """Where the channels of a reshape's input land in its output; each finder returns
    (output axis, builder) or None. The builder makes the output's dim and links it."""

    def __init__(self, src, dst, axis: int, trailing: int, dim: Dim):
        src = (*src[:axis], dim.length, *src[axis + 1:])
        self.src, self.dst, self.axis, self.trailing, self.dim = src, _resolved(src, dst), axis, trailing, dim
        self.lead = _symbolic_prod(src[:axis])

    def _axes(self, lead):
        """Output axes ``j`` after dims whose product is ``lead``, with the static size of
        the axes after ``j``."""
        for j in range(len(self.dst)):
            if _symbolic_prod(self.dst[:j]) == lead and isinstance(self.dst[j], int):
                tail = static_prod(self.dst[j + 1:])
                if tail is not None:
                    yield j, tail

    def keep(self):
        """The channel axis maps to one output axis (each channel spanning whole elements)."""
        return self._onto(self.lead, 1)

    def merge(self):
        """Fixed axes just before the channel axis merge into it: [N,g,m,...] -> [N,g*m,...]
        (channel ``s`` appears once per row of the fixed axes)."""
        for i0 in range(self.axis - 1, -1, -1):
            rows = static_prod(self.src[i0:self.axis])
            if rows is not None and rows > 1:
                found = self._onto(_symbolic_prod(self.src[:i0]), rows)
                if found is not None:
                    return found
        return None

    def _onto(self, lead, rows: int):
        dim, slot_elems = self.dim, self.dim.block * self.trailing
        for j, tail in self._axes(lead):
            if slot_elems % tail or self.dst[j] != rows * dim.n * (slot_elems // tail):
                continue
            block = slot_elems // tail

            def build(t: Tracer, node: onnx.NodeProto, j=j, block=block) -> Dim:
                if rows == 1 and block == dim.block:
                    t.set(node.output[0], dim, j)
                    return dim
                out = t.new(node.output[0], j, rows * dim.n, block, origin=t.view.label(node))
                for r in range(rows):
                    for s in range(dim.n):
                        t.space.union(dim.base + s, out.base + r * dim.n + s)
                return out
            return j, build
        return None

    def split(self):
        """The channel axis factored into two output axes; the longer factor carries the
        channels (on a tie, the inner one: a shuffle's [g, C/g])."""
        options = [*self._inner(), *self._outer()]
        if not options:
            return None
        return max(options, key=lambda o: (o[0], o[1]))[2:]

    def _inner(self):
        """[N, C, ...] -> [N, g, m, ...]: element ``a*m + y`` of the channel axis is element
        ``y`` of the new axis in row ``a``; the ``g`` axis is fixed."""
        length = self.dim.length
        for j0, _ in self._axes(self.lead):
            for j in range(j0 + 1, len(self.dst)):
                rows, tail = static_prod(self.dst[j0:j]), static_prod(self.dst[j + 1:])
                m = self.dst[j]
                if (rows and rows > 1 and isinstance(m, int) and tail == self.trailing
                        and rows * m == length):
                    def build(t: Tracer, node: onnx.NodeProto, j=j, m=m, rows=rows) -> Dim:
                        out = t.new(node.output[0], j, m, origin=t.view.label(node))
                        for a in range(rows):
                            t.space.link(self.dim, out, a_start=a * m, length=m)
                        return out
                    yield m, 1, j, build

    def _outer(self):
        """[N, C, ...] -> [N, G, per*...]: each element of the new axis holds ``per``
        consecutive channels (GroupNorm's groups, an inverse shuffle's [C/g, g])."""
        for j, tail in self._axes(self.lead):
            per = tail // self.trailing
            if tail % self.trailing or per <= 1 or self.dst[j] * per != self.dim.length:
                continue

            def build(t: Tracer, node: onnx.NodeProto, j=j, per=per) -> Dim:
                out = t.new(node.output[0], j, self.dst[j], origin=t.view.label(node))
                t.space.link_coarse(self.dim, out, per)
                return out
            yield self.dst[j], 0, j, build


def _resolved(src, dst) -> tuple:
    """``dst`` with its one unknown dim (a size the exporter computed at run time, such as
    PyTorch's ``c // groups``) worked out from the element count, which a reshape keeps."""
    symbols = sorted(d for d in src if isinstance(d, str))
    unknown = [i for i, d in enumerate(dst) if not isinstance(d, int)]
    if None in src or len(unknown) != len(symbols) + 1:
        return dst
    for i in unknown:
        rest = [d for k, d in enumerate(dst) if k != i and not isinstance(d, int)]
        if sorted(rest) == symbols and None not in rest:
            other = static_prod(d for d in dst if isinstance(d, int))
            total = static_prod(d for d in src if isinstance(d, int))
            if other and total % other == 0:
                return (*dst[:i], total // other, *dst[i + 1:])
    return dst


def _symbolic_prod(dims) -> tuple | None:
    value, symbols = 1, []
    for d in dims:
        if isinstance(d, int):
            value *= d
        elif isinstance(d, str):
            symbols.append(d)
        else:
            return None
    return value, tuple(sorted(symbols))


@register_op("Transpose")
def transpose(t: Tracer, node: onnx.NodeProto) -> None:
    tracked = t.dim(node.input[0])
    if tracked is None:
        return
    rank = t.view.rank(node.input[0])
    perm = t.view.attr(node, "perm") or list(reversed(range(rank or 0)))
    t.alias(node.output[0], node.input[0], axis=list(perm).index(tracked[1]))


# -- ops that read across channels: allowed only when they leave the channel axis alone ---
@register_op("Softmax", "LogSoftmax", "Hardmax")
def softmax(t: Tracer, node: onnx.NodeProto) -> None:
    tracked = t.dim(node.input[0])
    if tracked is None:
        return
    rank = t.view.rank(node.input[0]) or 0
    default = -1 if t.view.opset >= 13 else 1
    axis = int(t.view.attr(node, "axis", default)) % max(rank, 1)
    coerced = t.view.opset < 13 and tracked[1] >= axis
    if axis == tracked[1] or coerced:
        return unsupported(t, node, "normalises across channels")
    t.alias(node.output[0], node.input[0])


@register_op("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceL1", "ReduceL2",
             "ReduceProd", "ReduceLogSumExp", "ReduceSumSquare")
def reduce(t: Tracer, node: onnx.NodeProto) -> None:
    tracked = t.dim(node.input[0])
    if tracked is None:
        return
    v = t.view
    rank = v.rank(node.input[0]) or 0
    axes = v.attr(node, "axes")
    if axes is None and v.input(node, 1):
        arr = v.const(node.input[1])
        if arr is None:
            return unsupported(t, node, "reduces over axes that are not constants")
        axes = arr.tolist()
    axes = sorted(int(a) % rank for a in (axes or range(rank)))
    if tracked[1] in axes:
        return unsupported(t, node, "reduces across channels")
    keep = int(v.attr(node, "keepdims", 1))
    new_axis = tracked[1] if keep else tracked[1] - sum(a < tracked[1] for a in axes)
    t.alias(node.output[0], node.input[0], axis=new_axis)


@register_op("LRN")
def lrn(t: Tracer, node: onnx.NodeProto) -> None:
    unsupported(t, node, "normalises across neighbouring channels")


@register_op("LayerNormalization")
def layer_norm(t: Tracer, node: onnx.NodeProto) -> None:
    tracked = t.dim(node.input[0])
    if tracked is None:
        return
    rank = t.view.rank(node.input[0]) or 0
    axis = int(t.view.attr(node, "axis", -1)) % max(rank, 1)
    if tracked[1] >= axis:
        return unsupported(t, node, "normalises across channels")
    t.alias(node.output[0], node.input[0])


@register_op("GroupNormalization")
def group_norm(t: Tracer, node: onnx.NodeProto) -> None:
    """Statistics over groups of consecutive channels: a channel of the group is one whole
    normalisation group (``num_groups`` follows); scale and bias are per channel."""
    tracked = t.dim(node.input[0])
    if tracked is None:
        return
    dim, axis = tracked
    groups = int(t.view.attr(node, "num_groups", 0))
    if axis != 1 or groups <= 0 or dim.length % groups:
        return unsupported(t, node, "normalises groups that do not line up with the channels")
    label = t.view.label(node)
    per_group = t.new(None, 0, groups, origin=f"{label} (normalisation groups)")
    t.space.link_coarse(dim, per_group, dim.length // groups)
    for name, kind in zip(node.input[1:3], ("gn_scale", "gn_bias")):
        if not t.view.is_const(name):
            t.freeze(dim, f"{label} takes its {kind[3:]} from {name!r}, which is not a constant")
            continue
        t.member(node, name, 0, "param", kind, dim)
    t.rewrite("group_norm", node, per_group)
    t.alias(node.output[0], node.input[0])
