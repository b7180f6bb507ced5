"""What a TensorRT build will be asked for, decided without importing TensorRT.

The decisions that differ between TensorRT 10 and 11 live here as plain data, so that they
are testable anywhere and part of the engine cache key:

* TensorRT 10 builds a weakly typed network from the fp32 graph and enables fp16/int8
  kernels with ``BuilderFlag.FP16`` / ``BuilderFlag.INT8``;
* TensorRT 11 removed those flags: networks are strongly typed and precision comes from
  the graph, so fp16 is a graph conversion (:func:`deploypipe.backends.fp16.to_fp16`);
* int8 needs QuantizeLinear/DequantizeLinear nodes in the graph on both (deploypipe does not
  calibrate), and is refused in one sentence without them;
* fp32 means fp32: the TF32 flag, on by default, is cleared (as Polygraphy does), so an fp32
  engine matches ONNX Runtime within fp32 tolerances.

Dynamic input dimensions get one optimisation profile: batch 1 to ``max_batch``, tuned for
the target's batch; other dynamic dimensions come from the target's ``input_shape``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..errors import InputError, UnsupportedError
from ..targets import TargetProfile
from .feeds import TensorSpec

if TYPE_CHECKING:
    import onnx

DEFAULT_WORKSPACE = 4 << 30  # bytes of scratch memory TensorRT may use per layer
DEFAULT_MAX_BATCH = 16
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
_ONNX_DTYPES = {1: np.float32, 10: np.float16, 11: np.float64, 7: np.int64, 6: np.int32,
                3: np.int8, 2: np.uint8, 9: np.bool_}


@dataclass(frozen=True)
class InputProfile:
    """One input's shape range in an optimisation profile (trtexec's min/opt/max shapes)."""

    name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


@dataclass(frozen=True)
class TrtBuildOptions:
    """Everything that changes the engine TensorRT builds for one graph."""

    trt_major: int
    precision: str
    convert_fp16: bool  # build from to_fp16(graph) instead of the graph
    strongly_typed: bool
    builder_flags: tuple[str, ...]  # BuilderFlag member names set on the config
    cleared_flags: tuple[str, ...]  # BuilderFlag member names cleared (TF32 for fp32)
    workspace_bytes: int
    profiles: tuple[InputProfile, ...]  # empty when every input shape is fixed

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def trt_major(version: str) -> int:
    """The major version of a TensorRT version string such as ``10.8.0.43``."""
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        raise UnsupportedError(f"cannot read the TensorRT version {version!r}",
                               hint="install TensorRT 10 or 11") from None


def plan_build(version: str, target: TargetProfile, inputs: Sequence[TensorSpec], *,
               has_qdq: bool, workspace_bytes: int = DEFAULT_WORKSPACE,
               max_batch: int = DEFAULT_MAX_BATCH) -> TrtBuildOptions:
    """The build options for ``target`` on TensorRT ``version``."""
    major = trt_major(version)
    if major < 10:
        raise UnsupportedError(f"TensorRT {version} is too old for deploypipe",
                               hint="install TensorRT 10 or 11 (deploypipe[gpu])")
    flags = _precision_flags(major, target, has_qdq)
    return TrtBuildOptions(
        trt_major=major, precision=target.precision,
        convert_fp16=major >= 11 and target.precision == "fp16",
        strongly_typed=major >= 11, builder_flags=flags,
        cleared_flags=("TF32",) if target.precision == "fp32" else (),
        workspace_bytes=workspace_bytes,
        profiles=input_profiles(inputs, target.batch, target.input_shape,
                                max(max_batch, target.batch)))


def _precision_flags(major: int, target: TargetProfile, has_qdq: bool) -> tuple[str, ...]:
    if target.precision == "int8" and not has_qdq:
        raise UnsupportedError(f"target {target.name!r} asks for int8, which needs a quantized "
                               "graph (QuantizeLinear/DequantizeLinear nodes) because deploypipe "
                               "does not calibrate", hint="quantize the ONNX model first (NVIDIA "
                               "ModelOpt) or use an fp16 target such as gpu-trt-fp16")
    if major >= 11:
        return ()  # strongly typed: the graph carries every precision
    return {"fp32": (), "fp16": ("FP16",), "int8": ("FP16", "INT8")}[target.precision]


def input_profiles(inputs: Sequence[TensorSpec], batch: int,
                   sample_shape: tuple[int, ...] | None, max_batch: int) -> tuple[InputProfile, ...]:
    """One min/opt/max range per input, or none when every input shape is fixed."""
    if all(isinstance(d, int) for spec in inputs for d in spec.shape):
        return ()
    out = []
    for spec in inputs:
        first = spec.concrete_shape(spec.shape[0] if isinstance(spec.shape[0], int) else batch,
                                    sample_shape)
        if isinstance(spec.shape[0], int):
            out.append(InputProfile(spec.name, first, first, first))
            continue
        rest = first[1:]
        out.append(InputProfile(spec.name, (1, *rest), (batch, *rest), (max_batch, *rest)))
    return tuple(out)


def onnx_inputs(model: "onnx.ModelProto") -> list[TensorSpec]:
    """The graph inputs that are not initializers, as :class:`TensorSpec`."""
    inits = {i.name for i in model.graph.initializer}
    specs = []
    for value in model.graph.input:
        if value.name in inits:
            continue
        t = value.type.tensor_type
        if t.elem_type not in _ONNX_DTYPES:
            raise InputError(f"input {value.name!r} has ONNX element type {t.elem_type}, which "
                             "deploypipe cannot feed", hint="use float or integer inputs")
        shape = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                      for d in t.shape.dim)
        specs.append(TensorSpec(value.name, shape, np.dtype(_ONNX_DTYPES[t.elem_type])))
    return specs


def has_qdq(model: "onnx.ModelProto") -> bool:
    """Whether the graph is explicitly quantized (has Q/DQ nodes)."""
    return any(n.op_type in QDQ_OPS for n in model.graph.node)
