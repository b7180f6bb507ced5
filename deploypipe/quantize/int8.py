"""Static post-training int8 quantization into a Q/DQ graph, with ONNX Runtime's tools.

``onnxruntime.quantization`` first pre-processes the graph (shape inference and ONNX
Runtime's basic optimisations, which fold every BatchNormalization into its Conv: a BN left
between a quantized Conv and its ReLU would run in fp32 between Q/DQ pairs), then calibrates
activation ranges (min/max) on the feeds it is given and writes QuantizeLinear /
DequantizeLinear pairs around every op it can quantize, weights with one scale per output
channel. The graph stays standard ONNX: ONNX Runtime's CPU kernels fuse each Q/DQ pattern
into an int8 kernel, TensorRT reads it as explicit quantization.
"""
from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np

from ..errors import UnsupportedError
from .data import feed_reader

if TYPE_CHECKING:
    import onnx


@contextlib.contextmanager
def quiet_ort_logging() -> Iterator[None]:
    """ONNX Runtime's quantization tools warn through the root logger, setting it up when no
    one has (a warning per BatchNorm weight, advice to pre-process): hold the root logger
    to errors while they run, and leave it as it was."""
    root = logging.getLogger()
    level, guard = root.level, logging.NullHandler()
    root.addHandler(guard)  # logging.warning() would otherwise install a stderr handler for good
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
        root.removeHandler(guard)


def prepare(model: "onnx.ModelProto", folder: Path) -> "onnx.ModelProto":
    """ONNX Runtime's quantization pre-processing: shapes inferred, BatchNorm folded."""
    import onnx
    from onnxruntime.quantization import quant_pre_process

    path = folder / "prepared.onnx"
    try:
        with quiet_ort_logging():
            quant_pre_process(model, path, skip_symbolic_shape=True)
    except Exception as exc:  # shape inference and ORT's optimiser raise many types
        raise _refusal("pre-process", exc) from None
    return onnx.load(str(path))


def quantize_int8(prepared: "onnx.ModelProto", feeds: Sequence[dict[str, np.ndarray]], *,
                  keep: Sequence[str] = (), scheme: str = "cpu", per_channel: bool = True,
                  extra: dict | None = None) -> "onnx.ModelProto":
    """A Q/DQ copy of ``prepared`` (see :func:`prepare`) calibrated on ``feeds``; the nodes
    named in ``keep`` stay fp32. ``scheme``: ``cpu`` (uint8 activations, int8 weights) or
    ``tensorrt`` (symmetric int8 both)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    options = {"ActivationSymmetric": True, "WeightSymmetric": True} if scheme == "tensorrt" else {}
    activations = QuantType.QInt8 if scheme == "tensorrt" else QuantType.QUInt8
    with tempfile.TemporaryDirectory(prefix="deploypipe-int8-") as tmp:
        src, out = Path(tmp) / "in.onnx", Path(tmp) / "int8.onnx"
        onnx.save(prepared, str(src))
        try:
            with quiet_ort_logging():
                quantize_static(str(src), str(out), feed_reader(feeds), quant_format=QuantFormat.QDQ,
                                per_channel=per_channel, activation_type=activations, weight_type=QuantType.QInt8,
                                nodes_to_exclude=list(keep), calibrate_method=CalibrationMethod.MinMax,
                                extra_options={**options, **(extra or {})})
        except Exception as exc:  # the quantizer raises many types, all with text
            raise _refusal("quantize", exc) from None
        return onnx.load(str(out))


def _refusal(step: str, exc: Exception) -> UnsupportedError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:240]
    return UnsupportedError(f"ONNX Runtime's quantization tools cannot {step} this graph ({first})",
                            hint="keep the failing node in fp32 with --keep-fp32, or try --precision fp16")
