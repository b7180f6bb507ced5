"""Give architecture-only ONNX models real weights.

The onnx wheel's Caffe2 exports hold ConstantOfShape placeholders (every weight 0.02) and
take some BatchNorm parameters as graph inputs; with such weights every channel is the
same and an oracle check proves little. ``materialize`` turns them into seeded random
initializers of sensible scale (He-style for weights, positive variances for BatchNorm).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from ..graph.normalize import normalize


def materialize(model: onnx.ModelProto, *, seed: int = 0) -> onnx.ModelProto:
    model = normalize(model, infer_shapes=False)
    rng = np.random.default_rng(seed)
    g = model.graph
    _bn_inputs_to_initializers(g)
    roles = _bn_roles(g)
    new = []
    for t in g.initializer:
        arr = numpy_helper.to_array(t)
        if arr.dtype.kind != "f" or arr.size <= 1 and arr.ndim == 0:
            new.append(t)
            continue
        new.append(numpy_helper.from_array(_random_like(arr, roles.get(t.name), rng), t.name))
    del g.initializer[:]
    g.initializer.extend(new)
    return normalize(model)


def _bn_roles(g: onnx.GraphProto) -> dict[str, str]:
    roles = {}
    for node in g.node:
        if node.op_type == "BatchNormalization":
            for name, role in zip(node.input[1:], ("scale", "bias", "mean", "var")):
                roles[name] = role
    return roles


def _bn_inputs_to_initializers(g: onnx.GraphProto) -> None:
    inits = {t.name for t in g.initializer}
    bn_params = {name for n in g.node if n.op_type == "BatchNormalization" for name in n.input[1:]}
    keep = []
    for vi in g.input:
        if vi.name in bn_params and vi.name not in inits:
            dims = [d.dim_value for d in vi.type.tensor_type.shape.dim]
            g.initializer.append(numpy_helper.from_array(np.zeros(dims, np.float32), vi.name))
        else:
            keep.append(vi)
    del g.input[:]
    g.input.extend(keep)


def _random_like(arr: np.ndarray, role: str | None, rng: np.random.Generator) -> np.ndarray:
    shape = arr.shape
    if role == "var":
        out = rng.uniform(0.5, 1.5, shape)
    elif role == "scale":
        out = rng.uniform(0.5, 1.5, shape)
    elif role in ("mean", "bias") or arr.ndim <= 1:
        out = rng.uniform(-0.1, 0.1, shape)
    else:
        fan_in = int(np.prod(shape[1:])) if arr.ndim > 1 else shape[0]
        out = rng.standard_normal(shape) * np.sqrt(2.0 / max(fan_in, 1))
    return out.astype(arr.dtype)
