"""Static input shapes for graphs exported with dynamic dimensions: the analysis counts MACs
and infers channel axes from shapes, so a graph whose height and width are symbolic must be
given them (``--shapes x:1x3x224x224``); a dynamic batch alone is taken as 1."""
from __future__ import annotations

from typing import Mapping

import onnx

from ..errors import InputError
from .normalize import infer_inplace


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """The inputs fed at run time (not initializers listed as inputs)."""
    inits = {t.name for t in model.graph.initializer}
    return [vi for vi in model.graph.input if vi.name not in inits]


def dynamic_dims(model: onnx.ModelProto) -> dict[str, list[str]]:
    """Per input, its dimensions without a fixed size: ``{"x": ["dim 0 'batch'", ...]}``."""
    out: dict[str, list[str]] = {}
    for vi in graph_inputs(model):
        dims = vi.type.tensor_type.shape.dim
        free = [f"dim {i}" + (f" {d.dim_param!r}" if d.dim_param else "")
                for i, d in enumerate(dims) if not d.HasField("dim_value") or d.dim_value <= 0]
        if free:
            out[vi.name] = free
    return out


def with_static_shapes(model: onnx.ModelProto, shapes: Mapping[str, tuple[int, ...]] | None = None,
                       *, what: str = "the model") -> onnx.ModelProto:
    """``model`` with every input's shape fixed: from ``shapes`` (``""`` names the only
    input), a dynamic batch alone set to 1; the model itself when nothing is dynamic."""
    shapes = dict(shapes or {})
    inputs = {vi.name: vi for vi in graph_inputs(model)}
    if "" in shapes:
        if len(inputs) != 1:
            raise InputError(f"--shapes gives one unnamed shape but {what} has inputs {sorted(inputs)}",
                             hint="name each input, e.g. --shapes x:1x3x224x224,y:1x10")
        shapes[next(iter(inputs))] = shapes.pop("")
    unknown = sorted(set(shapes) - set(inputs))
    if unknown:
        raise InputError(f"--shapes names {unknown}, which {what} does not take as inputs",
                         hint=f"its inputs are {sorted(inputs)}")
    dynamic = dynamic_dims(model)
    if not shapes and not dynamic:
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for vi in graph_inputs(out):
        _fix(vi, shapes.get(vi.name), dynamic.get(vi.name, []), what)
    del out.graph.value_info[:]
    infer_inplace(out)
    return out


def _fix(vi: onnx.ValueInfoProto, shape: tuple[int, ...] | None, free: list[str], what: str) -> None:
    dims = vi.type.tensor_type.shape.dim
    if shape is not None:
        if len(shape) != len(dims):
            raise InputError(f"--shapes gives input {vi.name!r} {len(shape)} dims but {what} takes {len(dims)}",
                             hint=f"give all {len(dims)} dims, batch first")
        for i, (d, n) in enumerate(zip(dims, shape)):
            if d.HasField("dim_value") and d.dim_value > 0 and d.dim_value != n:
                raise InputError(f"--shapes sets dim {i} of input {vi.name!r} to {n}, but {what} fixes it at "
                                 f"{d.dim_value}", hint="give the model's own size for that dim")
            d.Clear()
            d.dim_value = int(n)
        return
    if any(not f.startswith("dim 0") for f in free):
        # a dynamic channel dim (of an NCHW image) is 3 in the example, the spatial ones 224
        example = "x".join(str(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else "1" if i == 0
                           else "3" if i == 1 and len(dims) == 4 else "224" for i, d in enumerate(dims))
        raise InputError(f"input {vi.name!r} of {what} has dynamic {', '.join(free)}, so its MACs and shapes "
                         "are unknown", hint=f"give the sizes, e.g. --shapes {vi.name}:{example}")
    if free:  # the batch alone: one image
        dims[0].Clear()
        dims[0].dim_value = 1
