"""Exact channel surgery: physically remove channels of channel groups from an ONNX graph.

Every member initializer loses the dropped slices, every shape-carrying constant follows
(Split sizes, Slice bounds, Reshape targets, Resize sizes, the ``group`` of grouped
convolutions, GroupNorm's ``num_groups``), shapes are inferred again and the checker
runs. The result computes what the original computes with the dropped channels' consumer weights zeroed (see
:mod:`deploypipe.graph.oracle`).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import InternalError
from .analysis import Analysis, check_drop
from .normalize import infer_inplace, without_weights
from .space import Dim


def element_masks(analysis: Analysis, drop: Mapping[int, np.ndarray]) -> dict[int, np.ndarray]:
    """Per dim id: which elements of the channel axis stay (only dims that lose some)."""
    masks: dict[int, np.ndarray] = {}
    for gid, channels in drop.items():
        group = analysis.groups[gid]
        ch = np.asarray(channels, dtype=np.int64)
        for dim_id, runs in group.layout:
            dim = analysis.dims[dim_id]
            mask = masks.setdefault(dim_id, np.ones(dim.length, dtype=bool))
            for slot, k in runs:
                block = k * dim.block
                idx = slot * dim.block + ch[:, None] * block + np.arange(block)[None, :]
                mask[idx.reshape(-1)] = False
    return masks


def shrink(analysis: Analysis, drop: Mapping[int, Sequence[int]]) -> onnx.ModelProto:
    """A new model without the channels in ``drop`` ({group id: channel indices})."""
    clean = check_drop(analysis, drop)
    masks = element_masks(analysis, clean)
    model = _copy_without_initializers(analysis.model)
    editor = _Editor(model, analysis, masks)
    editor.slice_initializers()
    editor.apply_rewrites()
    del model.graph.value_info[:]
    infer_inplace(model)
    try:
        onnx.checker.check_model(without_weights(model))
    except onnx.checker.ValidationError as exc:  # pragma: no cover - would be our bug
        raise InternalError(f"channel surgery produced an invalid model: {exc}") from exc
    return model


def _copy_without_initializers(model: onnx.ModelProto) -> onnx.ModelProto:
    """Everything of ``model`` but its initializers, which the editor adds (sliced or copied)."""
    out = onnx.ModelProto()
    graph = model.graph
    out.CopyFrom(onnx.ModelProto(ir_version=model.ir_version, producer_name=model.producer_name,
                                 producer_version=model.producer_version, domain=model.domain,
                                 model_version=model.model_version, doc_string=model.doc_string))
    out.opset_import.extend(model.opset_import)
    out.metadata_props.extend(model.metadata_props)
    out.functions.extend(model.functions)
    g = out.graph
    g.name = graph.name
    g.doc_string = graph.doc_string
    g.node.extend(graph.node)
    g.input.extend(graph.input)
    g.output.extend(graph.output)
    return out


class _Editor:
    def __init__(self, model: onnx.ModelProto, analysis: Analysis, masks: dict[int, np.ndarray]):
        self.model = model
        self.analysis = analysis
        self.masks = masks
        self.inits: dict[str, int] = {}
        self.node_at = {id(n): i for i, n in enumerate(analysis.model.graph.node)}
        self._fresh = 0

    # -- counting ---------------------------------------------------------------
    def kept(self, dim: Dim) -> int:
        mask = self.masks.get(dim.id)
        return dim.length if mask is None else int(mask.sum())

    def kept_before(self, dim: Dim, pos: int) -> int:
        mask = self.masks.get(dim.id)
        return pos if mask is None else int(mask[:pos].sum())

    # -- initializers -----------------------------------------------------------
    def slice_initializers(self) -> None:
        """Copy every initializer into the new model, sliced where a dropped channel lives."""
        per_tensor: dict[str, dict[int, np.ndarray]] = {}
        for decl in self.analysis.decls:
            mask = self.masks.get(decl.dim.id)
            if mask is not None:
                per_tensor.setdefault(decl.tensor, {})[decl.axis] = mask
        out = self.model.graph.initializer
        for tensor in self.analysis.model.graph.initializer:
            axes = per_tensor.get(tensor.name)
            if axes is None:
                out.append(tensor)
            else:
                arr = self.analysis.view.const(tensor.name)
                for axis, mask in axes.items():
                    arr = np.compress(mask, arr, axis=axis)
                out.append(numpy_helper.from_array(np.ascontiguousarray(arr), tensor.name))
            self.inits[tensor.name] = len(out) - 1

    def _new_const(self, base: str, arr: np.ndarray) -> str:
        self._fresh += 1
        name = f"{base}__dp{self._fresh}"
        while name in self.inits:
            self._fresh += 1
            name = f"{base}__dp{self._fresh}"
        self.model.graph.initializer.append(numpy_helper.from_array(arr, name))
        self.inits[name] = len(self.model.graph.initializer) - 1
        return name

    # -- shape-carrying constants -----------------------------------------------
    def apply_rewrites(self) -> None:
        for rw in self.analysis.rewrites:
            node = self.model.graph.node[self.node_at[id(rw.node)]]
            getattr(self, f"_rewrite_{rw.kind}")(node, rw.dim, rw.info, rw.node)

    def _rewrite_conv_group(self, node: onnx.NodeProto, dim: Dim, info: dict, orig: onnx.NodeProto) -> None:
        groups = self.kept(dim) // info["unit"]
        _set_attr(node, "group", groups)

    def _rewrite_group_norm(self, node: onnx.NodeProto, dim: Dim, info: dict, orig: onnx.NodeProto) -> None:
        _set_attr(node, "num_groups", self.kept(dim))

    def _rewrite_split(self, node: onnx.NodeProto, dim: Dim, info: dict, orig: onnx.NodeProto) -> None:
        sizes = [self.kept(part) for part in info["parts"]]
        if self.kept(dim) == dim.length:
            return
        if any(a.name == "split" for a in node.attribute) or self.analysis.view.opset < 13:
            _set_attr(node, "split", sizes)
            return
        _del_attr(node, "num_outputs")
        name = self._new_const(node.output[0] + "_split", np.array(sizes, dtype=np.int64))
        if len(node.input) > 1:
            node.input[1] = name
        else:
            node.input.append(name)

    def _rewrite_slice(self, node: onnx.NodeProto, dim: Dim, info: dict, orig: onnx.NodeProto) -> None:
        start = self.kept_before(dim, info["start"])
        end = self.kept_before(dim, info["end"])
        i = info["index"]
        if self.analysis.view.opset < 10:
            starts, ends = list(_get_attr(node, "starts")), list(_get_attr(node, "ends"))
            starts[i], ends[i] = start, end
            _set_attr(node, "starts", starts)
            _set_attr(node, "ends", ends)
            return
        for pos, value in ((1, start), (2, end)):
            arr = self.analysis.view.const(orig.input[pos]).copy()
            arr.reshape(-1)[i] = value
            node.input[pos] = self._new_const(node.input[pos], arr)

    def _rewrite_reshape(self, node: onnx.NodeProto, dim: Dim, info: dict, orig: onnx.NodeProto) -> None:
        source = self.analysis.view.const(orig.input[1])
        if source is None:
            return  # computed shape: follows the pruned graph by itself
        arr = source.copy()
        j = info["axis"]
        if arr.reshape(-1)[j] in (0, -1):
            return
        arr.reshape(-1)[j] = self.kept(dim)
        node.input[1] = self._new_const(node.input[1], arr)

    def _rewrite_resize(self, node: onnx.NodeProto, dim: Dim, info: dict, orig: onnx.NodeProto) -> None:
        arr = self.analysis.view.const(info["input"]).copy()
        arr.reshape(-1)[info["axis"]] = self.kept(dim)
        node.input[3] = self._new_const(info["input"], arr)


def _get_attr(node: onnx.NodeProto, name: str):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return None


def _set_attr(node: onnx.NodeProto, name: str, value) -> None:
    _del_attr(node, name)
    node.attribute.append(helper.make_attribute(name, value))


def _del_attr(node: onnx.NodeProto, name: str) -> None:
    keep = [a for a in node.attribute if a.name != name]
    if len(keep) != len(node.attribute):
        del node.attribute[:]
        node.attribute.extend(keep)
