"""Load and save ONNX models safely.

Loading checks what a model file could do to us before anything runs: its size, that it
parses, that external-data paths stay inside the model's folder, and the ONNX checker.
Saving is atomic. Inputs are never modified.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import numpy_helper

from ..errors import InputError, UnsupportedError
from ..utils.files import write_with

MAX_PROTO_BYTES = 2 * 1024**3 - 1  # protobuf's hard limit; larger models need external data


def load_onnx(path: str | os.PathLike, *, check: bool = True) -> onnx.ModelProto:
    """Read an ONNX file; one-sentence InputError for anything that is not a usable model."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"ONNX file {str(path)!r} does not exist", hint="check the path")
    if path.is_dir():
        raise InputError(f"{str(path)!r} is a folder, not an ONNX file", hint="give the path of a .onnx file")
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"ONNX file {str(path)!r} is empty", hint="re-export the model")
    if size > MAX_PROTO_BYTES:
        raise InputError(f"ONNX file {str(path)!r} is larger than 2 GiB",
                         hint="save it with external data (onnx.save(..., save_as_external_data=True))")
    data = path.read_bytes()
    model = parse_onnx_bytes(data, str(path))
    _check_external_data(model, path)
    if any(_uses_external_data(t) for t in model.graph.initializer):
        onnx.load_external_data_for_model(model, str(path.parent))
    if check:
        check_model(model, str(path))
    check_finite(model, f"ONNX file {str(path)!r}")
    return model


_FLOAT_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE,
                onnx.TensorProto.BFLOAT16)


def check_finite(model: onnx.ModelProto, where: str) -> None:
    """Refuse weights that hold NaN or infinity before any work starts: every result computed
    from them would be NaN, and the surgery oracle would blame itself. External data that
    is not loaded is skipped."""
    bad: list[tuple[str, int]] = []
    for name, tensor in _float_constants(model):
        if _uses_external_data(tensor) and not tensor.raw_data:
            continue
        values = numpy_helper.to_array(tensor)
        if values.dtype.kind != "f":
            values = values.astype(np.float32)
        finite = np.isfinite(values)
        if not finite.all():
            bad.append((name, int(values.size - np.count_nonzero(finite))))
    if bad:
        name, count = bad[0]
        more = f" (and {len(bad) - 1} more tensor{'s' if len(bad) > 2 else ''})" if len(bad) > 1 else ""
        raise InputError(f"{where} has {count} NaN or infinite value{'s' if count > 1 else ''} in weight "
                         f"{name!r}{more}",
                         hint="export it again from a model whose weights are finite (the training that "
                         "wrote it may have diverged); nothing was written")


def _float_constants(model: onnx.ModelProto):
    """(name, tensor) of every floating-point initializer and Constant node value."""
    for t in model.graph.initializer:
        if t.data_type in _FLOAT_TYPES:
            yield t.name, t
    for node in model.graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value" and a.t.data_type in _FLOAT_TYPES:
                    yield node.output[0], a.t


def parse_onnx_bytes(data: bytes, where: str = "the model") -> onnx.ModelProto:
    if data[:2] in (b"PK", b"\x80\x02") or data[:1] == b"\x80":
        raise InputError(f"{where} is a PyTorch file, not ONNX",
                         hint="export it first with `deploypipe export`")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise InputError(f"{where} is not a valid ONNX file ({_short(exc)})",
                         hint="the file may be truncated or of another format; re-export it") from None
    if not model.graph.node:
        raise InputError(f"{where} holds no ONNX graph (no nodes)",
                         hint="the file may be truncated or of another format; re-export it")
    return model


def check_model(model: onnx.ModelProto, where: str = "the model") -> None:
    try:
        onnx.checker.check_model(model, full_check=False)
    except onnx.checker.ValidationError as exc:
        raise InputError(f"{where} fails the ONNX checker: {_short(exc)}",
                         hint="re-export the model or repair it with onnx tools") from None
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx") and opset.version < 7:
            raise UnsupportedError(f"{where} uses ONNX opset {opset.version}",
                                   hint="convert it to opset 7 or newer with onnx.version_converter")


def save_onnx(model: onnx.ModelProto, path: str | os.PathLike) -> Path:
    """Write atomically; models over 2 GiB go to external data beside the file."""
    path = Path(path)
    big = model.ByteSize() > MAX_PROTO_BYTES

    def writer(tmp: Path) -> None:
        if big:
            onnx.save(model, str(tmp), save_as_external_data=True, location=path.name + ".data")
        else:
            tmp.write_bytes(model.SerializeToString())

    return write_with(path, writer)


def _uses_external_data(t: onnx.TensorProto) -> bool:
    return t.data_location == onnx.TensorProto.EXTERNAL


def _check_external_data(model: onnx.ModelProto, path: Path) -> None:
    base = path.parent.resolve()
    for t in model.graph.initializer:
        if not _uses_external_data(t):
            continue
        loc = next((e.value for e in t.external_data if e.key == "location"), "")
        target = (base / loc).resolve()
        if os.path.isabs(loc) or base not in target.parents:
            raise InputError(f"ONNX file {str(path)!r} points tensor {t.name!r} at external data "
                             f"{loc!r} outside its folder",
                             hint="refusing to read it; keep external data files beside the model")
        if not target.is_file():
            raise InputError(f"external data file {loc!r} of {str(path)!r} is missing",
                             hint="copy it next to the model")


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]
