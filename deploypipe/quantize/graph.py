"""Reading a graph's precision: which Conv/Gemm layers run quantized, and which nodes a
``keep_fp32`` list names."""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from ..errors import InputError
from .config import KEEP_ALIASES

if TYPE_CHECKING:
    import onnx

LAYER_OPS = ("Conv", "Gemm", "MatMul", "ConvTranspose")  # the layers whose precision matters
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
_FLOAT16 = 10  # onnx.TensorProto.FLOAT16


def has_qdq(model: "onnx.ModelProto") -> bool:
    """Whether the graph is explicitly quantized (has Q/DQ nodes)."""
    return any(n.op_type in QDQ_OPS for n in model.graph.node)


def is_quantized(model: "onnx.ModelProto") -> bool:
    """Already int8 (Q/DQ nodes) or fp16 (fp16 weights): nothing to quantize again."""
    return has_qdq(model) or any(t.data_type == _FLOAT16 for t in model.graph.initializer)


def named(model: "onnx.ModelProto") -> "onnx.ModelProto":
    """A copy whose unnamed nodes are named ``{op_type}_{index}``: ONNX Runtime's quantizer
    excludes nodes by name, and the result reports layers by name."""
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    taken = {n.name for n in out.graph.node if n.name}
    for i, node in enumerate(out.graph.node):
        if not node.name:
            name = f"{node.op_type}_{i}"
            while name in taken:
                name += "_"
            node.name = name
            taken.add(name)
    return out


def layers(model: "onnx.ModelProto") -> list[str]:
    """Names of the Conv/Gemm/MatMul nodes, in graph order."""
    return [n.name for n in model.graph.node if n.op_type in LAYER_OPS]


def layer_precisions(model: "onnx.ModelProto") -> dict[str, str]:
    """Each layer's precision: ``int8`` when its data and weight inputs come from
    DequantizeLinear, ``fp16`` when its weight is stored in fp16, else ``fp32``."""
    producer = {o: n.op_type for n in model.graph.node for o in n.output}
    half = {t.name for t in model.graph.initializer if t.data_type == _FLOAT16}
    out = {}
    for node in model.graph.node:
        if node.op_type not in LAYER_OPS:
            continue
        feeds = list(node.input[:2])
        if len(feeds) == 2 and all(producer.get(t) == "DequantizeLinear" for t in feeds):
            out[node.name] = "int8"
        elif len(feeds) == 2 and feeds[1] in half:
            out[node.name] = "fp16"
        else:
            out[node.name] = "fp32"
    return out


def resolve_keep(model: "onnx.ModelProto", keep: Sequence[str]) -> list[str]:
    """``keep`` as layer names: ``first`` and ``last`` are the first and last layer in graph
    order; any other entry must name a layer (one sentence otherwise)."""
    names = layers(model)
    out: list[str] = []
    for entry in keep:
        if entry in KEEP_ALIASES:
            if not names:
                continue
            entry = names[0] if entry == "first" else names[-1]
        elif entry not in names:
            shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
            raise InputError(f"--keep-fp32 names {entry!r}, which is not a Conv/Gemm/MatMul node of the model",
                             hint=f"give node names such as {shown or 'none: the model has no such layer'}, "
                                  "or first / last")
        if entry not in out:
            out.append(entry)
    return out


def weight_sqnr(fp32: "onnx.ModelProto", qdq: "onnx.ModelProto") -> dict[str, float]:
    """Signal-to-quantization-noise ratio (dB) of each int8 layer's weight: the fp32 weight
    of the same-named node in ``fp32`` against its dequantized int8 copy in ``qdq``. Low
    values flag layers whose weights int8 represents badly (outlier channels)."""
    import numpy as np
    from onnx import numpy_helper

    inits = {t.name: t for g in (fp32.graph, qdq.graph) for t in g.initializer}
    dq = {n.output[0]: n for n in qdq.graph.node if n.op_type == "DequantizeLinear"}
    weights = {n.name: n.input[1] for n in fp32.graph.node if n.op_type in LAYER_OPS and len(n.input) > 1}
    out = {}
    for node in qdq.graph.node:
        src, deq = weights.get(node.name), dq.get(node.input[1]) if len(node.input) > 1 else None
        if src not in inits or deq is None or any(t not in inits for t in deq.input[:2]):
            continue
        w = numpy_helper.to_array(inits[src]).astype(np.float64)
        q, scale = (numpy_helper.to_array(inits[t]).astype(np.float64) for t in deq.input[:2])
        zero = numpy_helper.to_array(inits[deq.input[2]]).astype(np.float64) if len(deq.input) > 2 else 0.0
        axis = next((a.i for a in deq.attribute if a.name == "axis"), 1)
        restored = (q - _along(zero, axis, q.ndim)) * _along(scale, axis, q.ndim)
        noise = float(np.sum((w - restored) ** 2))
        out[node.name] = 10 * float(np.log10(float(np.sum(w ** 2)) / noise)) if noise > 0 else float("inf")
    return out


def _along(values, axis: int, ndim: int):
    """Per-channel ``values`` shaped to broadcast along ``axis`` of an ``ndim`` array
    (a scalar as it is)."""
    import numpy as np

    values = np.asarray(values)
    if values.ndim != 1:
        return values
    shape = [1] * ndim
    shape[axis] = -1
    return values.reshape(shape)
