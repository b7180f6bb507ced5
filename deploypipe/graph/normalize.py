"""Bring an ONNX graph from any exporter into the one form the analysis reads.

* constants stored as ``Constant`` nodes (Paddle, TF exports) become initializers;
* ``ConstantOfShape`` nodes with a constant shape (old Caffe2 exports use them as weight
  placeholders) become initializers;
* initializers listed again as graph inputs (IR version < 4) stop being inputs;
* nodes whose inputs are all constants are folded (Caffe2's ``Unsqueeze(bn_scale)``, a
  weight ``Reshape``), so per-channel parameters are visible as initializers;
* ``Identity`` chains are removed and unused nodes and initializers dropped;
* shapes are inferred (on a weight-less skeleton, so a 500 MB model costs no more than a
  small one), so every handler knows ranks and channel counts.

Each step returns a new model; the input is never modified.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import InputError
from ..utils.log import get_logger

log = get_logger("graph")


def normalize(model: onnx.ModelProto, *, infer_shapes: bool = True) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    _inputs_with_initializers_become_constants(out)
    _constants_to_initializers(g)
    _fold_constant_nodes(g, _opset(out))
    _remove_identities(g)
    _remove_dead_code(g)
    if infer_shapes:
        infer_inplace(out)
    return out


SKELETON_MIN_ELEMENTS = 4096  # initializers this large are weights, never shape data


def infer(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` with inferred shapes."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    infer_inplace(out)
    return out


def infer_inplace(model: onnx.ModelProto) -> None:
    """Shape inference with data propagation (so Reshape targets computed from Shape ops
    resolve), run on a skeleton whose large initializers are typed graph inputs; the
    inferred value_info is written into ``model``."""
    skeleton = without_weights(model)
    _shape_stand_ins(skeleton.graph)
    try:
        inferred = onnx.shape_inference.infer_shapes(skeleton, check_type=False, strict_mode=False,
                                                     data_prop=True)
    except (onnx.shape_inference.InferenceError, RuntimeError) as exc:
        raise InputError(f"ONNX shape inference failed: {str(exc).splitlines()[0][:200]}",
                         hint="fix or re-export the model so that every tensor has a shape") from None
    del model.graph.value_info[:]
    model.graph.value_info.extend(inferred.graph.value_info)
    for real, inf in zip(model.graph.output, inferred.graph.output):
        if not real.type.tensor_type.HasField("shape") and inf.type.tensor_type.HasField("shape"):
            real.CopyFrom(inf)


# Ops whose output has their first input's shape but that onnx's shape inference leaves
# unshaped (GroupNormalization, a function op): inference sees an Identity in their place.
SAME_SHAPE_UNINFERRED = ("GroupNormalization",)


def _shape_stand_ins(g: onnx.GraphProto) -> None:
    """Replace, in a skeleton sent to shape inference, each op of SAME_SHAPE_UNINFERRED."""
    for i, node in enumerate(g.node):
        if node.op_type in SAME_SHAPE_UNINFERRED and node.domain in ("", "ai.onnx"):
            g.node[i].CopyFrom(helper.make_node("Identity", [node.input[0]], [node.output[0]], name=node.name))


def without_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose large initializers are typed graph inputs: cheap to check and infer."""
    skeleton = onnx.ModelProto()
    g = model.graph
    big = [t for t in g.initializer if int(np.prod(t.dims)) >= SKELETON_MIN_ELEMENTS]
    big_names = {t.name for t in big}
    # everything but the large initializers (no 500 MB round trip)
    skeleton.ir_version = max(model.ir_version, 4)
    skeleton.opset_import.extend(model.opset_import)
    sg = skeleton.graph
    sg.name = g.name
    sg.value_info.extend(g.value_info)
    sg.node.extend(g.node)
    sg.input.extend(g.input)
    sg.output.extend(g.output)
    sg.initializer.extend(t for t in g.initializer if t.name not in big_names)
    for t in big:
        sg.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    for f in model.functions:
        skeleton.functions.append(f)
    return skeleton


def _inputs_with_initializers_become_constants(model: onnx.ModelProto) -> None:
    g = model.graph
    init_names = {t.name for t in g.initializer}
    keep = [i for i in g.input if i.name not in init_names]
    if len(keep) != len(g.input):
        del g.input[:]
        g.input.extend(keep)
        if model.ir_version < 4:
            model.ir_version = 4


def _constants_to_initializers(g: onnx.GraphProto) -> None:
    inits = {t.name: t for t in g.initializer}
    kept = []
    for node in g.node:
        tensor = None
        if node.op_type == "Constant" and not node.domain:
            tensor = _constant_value(node)
        elif node.op_type == "ConstantOfShape" and node.input and node.input[0] in inits:
            shape = numpy_helper.to_array(inits[node.input[0]]).astype(np.int64)
            fill = np.zeros(1, np.float32)
            for a in node.attribute:
                if a.name == "value":
                    fill = numpy_helper.to_array(a.t)
            tensor = numpy_helper.from_array(np.full(tuple(shape), fill.reshape(-1)[0], dtype=fill.dtype))
        if tensor is None:
            kept.append(node)
            continue
        tensor.name = node.output[0]
        g.initializer.append(tensor)
        inits[tensor.name] = tensor
    if len(kept) != len(g.node):
        del g.node[:]
        g.node.extend(kept)


def _constant_value(node: onnx.NodeProto) -> onnx.TensorProto | None:
    for a in node.attribute:
        if a.name == "value":
            t = onnx.TensorProto()
            t.CopyFrom(a.t)
            return t
        if a.name in ("value_float", "value_int", "value_floats", "value_ints"):
            dtype = np.float32 if "float" in a.name else np.int64
            return numpy_helper.from_array(np.array(helper.get_attribute_value(a), dtype=dtype))
    return None  # sparse or string constants: leave the node


_NOT_FOLDED = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
               "Multinomial", "Bernoulli", "Loop", "If", "Scan"}


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)


def _fold_constant_nodes(g: onnx.GraphProto, opset: int) -> None:
    """Evaluate the nodes that only read constants with onnx's reference runtime: all in one
    pass, or, when one of them cannot run there, one node at a time, so a single op it lacks
    keeps only itself and what reads it unfolded."""
    consts = {t.name for t in g.initializer}
    foldable = []
    for node in g.node:
        if (node.input and node.domain in ("", "ai.onnx") and node.op_type not in _NOT_FOLDED
                and all(i in consts for i in node.input if i)):
            foldable.append(node)
            consts.update(o for o in node.output if o)
    if not foldable:
        return
    inits = {t.name: t for t in g.initializer}
    values = _evaluate(foldable, inits, opset)
    if values is None:
        values = _evaluate_each(foldable, inits, opset)
    folded = {id(n) for n in foldable if all(o in values for o in n.output if o)}
    kept = [n for n in g.node if id(n) not in folded]
    del g.node[:]
    g.node.extend(kept)
    for n in foldable:
        if id(n) in folded:
            g.initializer.extend(numpy_helper.from_array(np.asarray(values[o]), o) for o in n.output if o)


def _evaluate(nodes, inits: dict[str, onnx.TensorProto], opset: int) -> dict[str, np.ndarray] | None:
    """The outputs of ``nodes`` (constants in, constants out), or None if the runtime fails."""
    from onnx.reference import ReferenceEvaluator

    needed = {i for n in nodes for i in n.input if i}
    outputs = [o for n in nodes for o in n.output if o]
    sub = helper.make_graph(nodes, "fold", [], [helper.make_value_info(o, onnx.TypeProto()) for o in outputs],
                            initializer=[t for name, t in inits.items() if name in needed])
    try:
        model = helper.make_model(sub, opset_imports=[helper.make_opsetid("", max(opset, 7))])
        return dict(zip(outputs, ReferenceEvaluator(model).run(None, {})))
    except Exception:  # noqa: BLE001  (an op the reference runtime lacks or rejects)
        return None


def _evaluate_each(nodes, inits: dict[str, onnx.TensorProto], opset: int) -> dict[str, np.ndarray]:
    """Node by node: what one node yields becomes a constant for the next; a node that fails
    (and so everything reading it) is left in the graph."""
    known, values = dict(inits), {}
    for node in nodes:
        if not all(i in known for i in node.input if i):
            continue
        out = _evaluate([node], known, opset)
        if out is None:
            log.debug("constant %s node %s left unfolded: the reference runtime cannot run it",
                      node.op_type, node.name or node.output[0])
            continue
        values.update(out)
        known.update({name: numpy_helper.from_array(np.asarray(v), name) for name, v in out.items()})
    return values


def _remove_identities(g: onnx.GraphProto) -> None:
    outputs = {o.name for o in g.output}
    rename: dict[str, str] = {}
    kept = []
    for node in g.node:
        if node.op_type == "Identity" and not node.domain and node.output[0] not in outputs:
            src = node.input[0]
            rename[node.output[0]] = rename.get(src, src)
            continue
        kept.append(node)
    if not rename:
        return
    for node in kept:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    del g.node[:]
    g.node.extend(kept)


def _remove_dead_code(g: onnx.GraphProto) -> None:
    needed = {o.name for o in g.output}
    kept_rev = []
    for node in reversed(g.node):
        if any(o in needed for o in node.output if o):
            kept_rev.append(node)
            needed.update(i for i in node.input if i)
            needed.update(_subgraph_inputs(node))
    if len(kept_rev) != len(g.node):
        del g.node[:]
        g.node.extend(reversed(kept_rev))
    unused = [t for t in g.initializer if t.name not in needed]
    if unused:
        keep = [t for t in g.initializer if t.name in needed]
        del g.initializer[:]
        g.initializer.extend(keep)


def _subgraph_inputs(node: onnx.NodeProto) -> set[str]:
    names: set[str] = set()
    for a in node.attribute:
        for sub in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
            for n in sub.node:
                names.update(n.input)
    return names
