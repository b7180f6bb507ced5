"""One sentence for a model ONNX Runtime cannot load: an op it does not know (a custom domain,
an op newer than it), an IR version past its own, or anything else it says, instead of its
exception text inside a traceback."""
from __future__ import annotations

import re

from ..errors import DeploypipeError, InputError, UnsupportedError

_UNKNOWN_OP = re.compile(r"([\w.]*:?\w+)\(-?\d+\) is not a registered function/op")
_IR_VERSION = re.compile(r"Unsupported model IR version: (\d+), max(?: supported IR version:)? (\d+)")


def load_refusal(what: str, exc: BaseException) -> DeploypipeError:
    """The error to raise when ONNX Runtime refused to load ``what`` (a path or a description)."""
    text = str(exc)
    reason = (text.strip().splitlines() or [type(exc).__name__])[0][:300]
    op = _UNKNOWN_OP.search(text)
    if op:
        return UnsupportedError(f"{what} uses the op {op.group(1)}, which ONNX Runtime does not know",
                                hint="export the model with standard ONNX ops, or register the custom op's "
                                     "library with ONNX Runtime")
    ir = _IR_VERSION.search(text)
    if ir:
        have, top = ir.groups()
        return UnsupportedError(f"{what} has ONNX IR version {have}, newer than this ONNX Runtime reads "
                                f"(up to {top})", hint="export it with an older opset / IR version, or "
                                                       "install a newer onnxruntime")
    return InputError(f"ONNX Runtime cannot load {what}: {reason}", hint="check that it is a valid ONNX model")
