"""``to_fp16``: an fp32 ONNX graph rewritten to compute in fp16, with fp32 inputs and outputs.

TensorRT 11 takes precision from the graph (strongly typed networks; the FP16 builder flag
is gone), and the ONNX Runtime CUDA provider has no fp16 switch at all, so fp16 there is a
graph conversion. The rules, in the spirit of onnxconverter-common's ``convert_float_to_float16``
with ``keep_io_types=True``:

* every float32 initializer, ``Constant`` and intermediate tensor becomes float16 (values
  clipped to the float16 range), ``Cast(to=FLOAT)`` becomes ``Cast(to=FLOAT16)``;
* graph inputs and outputs stay float32, with one ``Cast`` behind each input and before each
  output, so callers feed and read the same arrays as for the fp32 model;
* an op in ``FP16_BLOCKED_OPS`` (numerically sensitive, such as Softmax) or outside the
  default ONNX domain runs in float32 between Casts;
* an input or output that the op's schema allows only as float32 (Resize's ``scales``,
  QuantizeLinear-13's ``y_scale``) stays float32.

A tensor needed in both precisions is cast once, right before its first consumer.
BatchNormalization runs in fp16 (TensorRT folds it into the convolution anyway).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..errors import UnsupportedError

if TYPE_CHECKING:
    import onnx

FP16_BLOCKED_OPS = frozenset({"Softmax", "LogSoftmax", "TopK", "NonMaxSuppression", "RoiAlign",
                              "CumSum", "Range", "RandomNormalLike", "RandomUniformLike"})
FP16_MAX = 65504.0
FLOAT, FLOAT16 = 1, 10  # onnx.TensorProto.FLOAT, FLOAT16


def to_fp16(model: "onnx.ModelProto", *,
            blocked: frozenset[str] = FP16_BLOCKED_OPS) -> "onnx.ModelProto":
    """A float16 copy of ``model`` (which is left unchanged); see the module docstring."""
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    plan = _plan(out, blocked)
    _convert_constants(out.graph, plan)
    _rewire(out.graph, plan)
    del out.graph.value_info[:]  # the old types are stale; inference recomputes them
    _check(out)
    return out


def _check(model: "onnx.ModelProto") -> None:
    """Strict type inference over the result: a port left in the wrong precision (an op
    whose output type an attribute sets, say) fails here rather than in TensorRT."""
    import onnx

    try:
        onnx.checker.check_model(model)
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as exc:  # checker and inference raise several error types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise UnsupportedError(f"the fp16 conversion of this model is not type-consistent: {first}",
                               hint="run it in fp32 or convert it with NVIDIA ModelOpt AutoCast") from None


@dataclass
class _Plan:
    """Which precision each float tensor is produced in, and each node port wants."""

    native: dict[str, int]  # float tensor -> FLOAT or FLOAT16 as produced
    wants: dict[tuple[int, int], int]  # (node index, input index) -> precision consumed
    outputs: set[str]  # graph output names (they stay float32)
    made: set[str] = field(default_factory=set)  # cast tensors already emitted

    def storage(self, tensor: str) -> str:
        """The name the producer writes: a graph output computed in fp16 is cast to its
        own name, so the fp16 value needs another one."""
        if tensor in self.outputs and self.native.get(tensor) == FLOAT16:
            return f"{tensor}__fp16"
        return tensor

    def name(self, tensor: str, precision: int) -> str:
        """The tensor carrying ``tensor``'s value in ``precision``."""
        if tensor not in self.native or self.native[tensor] == precision:
            return self.storage(tensor)
        if tensor in self.outputs and precision == FLOAT:
            return tensor
        return f"{tensor}__{'fp32' if precision == FLOAT else 'fp16'}"


def _plan(model: "onnx.ModelProto", blocked: frozenset[str]) -> _Plan:
    types = _elem_types(model)
    floats = {n for n, t in types.items() if t == FLOAT}
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    graph = model.graph
    init_names = {i.name for i in graph.initializer}
    native = {i.name: FLOAT for i in graph.input if i.name in floats and i.name not in init_names}
    wants: dict[tuple[int, int], int] = {}
    for k, node in enumerate(graph.node):
        ins, outs = _port_precisions(node, opset, blocked)
        for j, t in enumerate(node.input):
            if t in floats:
                wants[(k, j)] = ins(j)
        for j, t in enumerate(node.output):
            if t in floats:
                native[t] = outs(j)
    for name in init_names & floats:
        consumers = [p for (k, j), p in wants.items() if graph.node[k].input[j] == name]
        native[name] = FLOAT if consumers and all(p == FLOAT for p in consumers) else FLOAT16
    return _Plan(native=native, wants=wants, outputs={o.name for o in graph.output})


def _elem_types(model: "onnx.ModelProto") -> dict[str, int]:
    """Element type of every tensor, after shape inference."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception as exc:  # inference errors come in several types
        raise UnsupportedError(f"cannot convert the model to fp16: shape inference fails ({exc})",
                               hint="check the model with onnx.checker or use fp32") from None
    g = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*g.input, *g.value_info, *g.output]}
    types.update({i.name: i.data_type for i in g.initializer})
    return types


def _port_precisions(node: "onnx.NodeProto", opset: int, blocked: frozenset[str]):
    """(input precision by index, output precision by index) for a node's float ports."""
    schema = _schema(node, opset)
    if schema is None or node.op_type in blocked:
        return (lambda j: FLOAT), (lambda j: FLOAT)
    if node.op_type == "Cast":
        return (lambda j: FLOAT16), (lambda j: FLOAT16)
    return (lambda j: _formal(schema.inputs, j)), (lambda j: _formal(schema.outputs, j))


def _schema(node: "onnx.NodeProto", opset: int):
    import onnx.defs

    if node.domain not in ("", "ai.onnx"):
        return None
    try:
        return onnx.defs.get_schema(node.op_type, opset, "")
    except onnx.defs.SchemaError:
        return None


def _formal(params, index: int) -> int:
    """FLOAT16 when the schema lets this port be float16, else FLOAT."""
    if not params:
        return FLOAT
    param = params[min(index, len(params) - 1)]  # a variadic last parameter repeats
    return FLOAT16 if "tensor(float16)" in param.types else FLOAT


def _convert_constants(graph: "onnx.GraphProto", plan: _Plan) -> None:
    """Initializers, Constant/ConstantOfShape values and Cast targets that become fp16."""
    from onnx import helper

    for init in graph.initializer:
        if plan.native.get(init.name) == FLOAT16:
            init.CopyFrom(_half(init))
    for node in graph.node:
        produces_half = any(plan.native.get(o) == FLOAT16 for o in node.output)
        if not produces_half:
            continue
        if node.op_type == "ConstantOfShape" and not any(a.name == "value" for a in node.attribute):
            node.attribute.append(helper.make_attribute(
                "value", helper.make_tensor("value", FLOAT16, [1], [0.0])))
        for attr in node.attribute:
            if node.op_type in ("Constant", "ConstantOfShape") and attr.name == "value":
                attr.t.CopyFrom(_half(attr.t))
            elif node.op_type == "Cast" and attr.name == "to" and attr.i == FLOAT:
                attr.CopyFrom(helper.make_attribute("to", FLOAT16))


def _half(tensor: "onnx.TensorProto") -> "onnx.TensorProto":
    from onnx import numpy_helper

    if tensor.data_type != FLOAT:
        return tensor
    values = np.clip(numpy_helper.to_array(tensor), -FP16_MAX, FP16_MAX).astype(np.float16)
    return numpy_helper.from_array(values, tensor.name)


def _rewire(graph: "onnx.GraphProto", plan: _Plan) -> None:
    """Rename ports to the precision they want, inserting the Casts that make them."""
    nodes = list(graph.node)
    new: list = []
    for k, node in enumerate(nodes):
        for j, tensor in enumerate(node.input):
            want = plan.wants.get((k, j))
            if want is not None:
                node.input[j] = _ensure(tensor, want, plan, new)
        new.append(node)
        for j, tensor in enumerate(node.output):
            if tensor in plan.native:
                node.output[j] = plan.storage(tensor)
                if tensor in plan.outputs and plan.native[tensor] == FLOAT16:
                    _ensure(tensor, FLOAT, plan, new)
    for out in graph.output:  # an output passed straight from an input or initializer
        if out.name in plan.native and plan.storage(out.name) != out.name:
            _ensure(out.name, FLOAT, plan, new)
    del graph.node[:]
    graph.node.extend(new)


def _ensure(tensor: str, precision: int, plan: _Plan, new: list) -> str:
    """The name of ``tensor`` in ``precision``, appending a Cast to ``new`` the first time."""
    from onnx import helper

    name = plan.name(tensor, precision)
    source = plan.storage(tensor)
    if name != source and name not in plan.made:
        plan.made.add(name)
        new.append(helper.make_node("Cast", [source], [name], to=precision,
                                    name=f"{name}__cast"))
    return name
