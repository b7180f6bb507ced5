"""fp16 graphs through ONNX Runtime's maintained converter.

``onnxruntime.transformers.float16`` ships in the onnxruntime wheel (the code
onnxconverter-common started, kept by the ONNX Runtime team): it converts the subgraphs of
If/Loop/Scan too, keeps numerically fragile ops in fp32 behind Casts, and with
``keep_io_types`` leaves the graph's inputs and outputs fp32, so callers feed the same arrays.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from ..errors import UnsupportedError
from .int8 import quiet_ort_logging

if TYPE_CHECKING:
    import onnx


def convert_fp16(model: "onnx.ModelProto", *, keep: Sequence[str] = ()) -> "onnx.ModelProto":
    """An fp16 copy of ``model`` with fp32 inputs and outputs; the nodes named in ``keep``
    stay fp32."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    try:
        with quiet_ort_logging():
            return convert_float_to_float16(copy, keep_io_types=True, node_block_list=list(keep) or None)
    except Exception as exc:  # the converter and shape inference raise many types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:240]
        raise UnsupportedError(f"ONNX Runtime's fp16 converter cannot convert this graph ({first})",
                               hint="keep the failing node in fp32 with --keep-fp32, or use int8") from None
