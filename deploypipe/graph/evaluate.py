"""Classifiers given only as ONNX, run through ONNX Runtime (CPU): top-1 accuracy on
labelled images, and, for images without labels, how often a pruned model's top-1 agrees
with the dense model's.

Images are fed as given (already preprocessed as the model expects), in batches; the
model must have one input and its first output must hold the class scores.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Iterator, Sequence, Union

import numpy as np
import onnx
from onnx import helper

from ..errors import InputError, UnsupportedError

if TYPE_CHECKING:
    import onnxruntime

ModelLike = Union[onnx.ModelProto, str, os.PathLike]


def session(model: ModelLike, *, threads: int = 0) -> "onnxruntime.InferenceSession":
    """A CPU session of ``model`` (a ModelProto or a path); the model is not modified."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # numpy runs between calls
    if threads:
        opts.intra_op_num_threads = threads
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else os.fspath(model)
    try:
        return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types, all with text
        from ..utils.ort_session import load_refusal

        raise load_refusal("the model" if isinstance(model, onnx.ModelProto) else repr(os.fspath(model)),
                           exc) from None


def with_outputs(model: onnx.ModelProto, names: Sequence[str]) -> onnx.ModelProto:
    """A copy of ``model`` that also returns the intermediate tensors ``names``."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    types = {vi.name: vi.type.tensor_type.elem_type for vi in model.graph.value_info}
    present = {o.name for o in out.graph.output}
    for name in names:
        if name not in present:
            elem = types.get(name) or onnx.TensorProto.FLOAT
            out.graph.output.append(helper.make_tensor_value_info(name, elem, None))
            present.add(name)
    return out


def single_input(sess: "onnxruntime.InferenceSession") -> tuple[str, np.dtype]:
    """The name and numpy dtype of the session's one input."""
    inputs = sess.get_inputs()
    if len(inputs) != 1:
        raise UnsupportedError(f"the model has {len(inputs)} inputs, but images feed exactly one",
                               hint="evaluate a single-input classifier")
    dtypes = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}
    if inputs[0].type not in dtypes:
        raise UnsupportedError(f"the model's input {inputs[0].name!r} is {inputs[0].type}, not floating point",
                               hint="give a model that takes preprocessed float images")
    return inputs[0].name, np.dtype(dtypes[inputs[0].type])


def check_images(images, what: str = "images") -> np.ndarray:
    """``images`` as a non-empty numpy array of at least two axes (N, ...)."""
    x = np.asarray(images)
    if x.ndim < 2 or len(x) == 0:
        raise InputError(f"the {what} have shape {x.shape}, not (N, ...) with N > 0",
                         hint="pass a numpy array of preprocessed images, e.g. N x C x H x W")
    if not np.issubdtype(x.dtype, np.floating):
        raise InputError(f"the {what} are {x.dtype}, not floating point",
                         hint="pass them preprocessed as the model expects (normalised floats)")
    return x


def chunks(x: np.ndarray, batch: int) -> Iterator[np.ndarray]:
    if batch < 1:
        raise InputError(f"batch must be at least 1, not {batch}", hint="pass batch=64 or so")
    for start in range(0, len(x), batch):
        yield x[start:start + batch]


def run(sess: "onnxruntime.InferenceSession", names: Sequence[str], feeds: dict) -> list[np.ndarray]:
    """``sess.run``, with ONNX Runtime's complaint about the feeds turned into one sentence."""
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument

    try:
        return sess.run(list(names), feeds)
    except (InvalidArgument, Fail) as exc:
        shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in feeds.items())
        raise InputError(f"ONNX Runtime could not run the model on {shapes}: {str(exc).splitlines()[0][:160]}",
                         hint="pass images shaped and preprocessed as the model's input expects") from None


def predictions(model: ModelLike, images, *, batch: int = 256) -> np.ndarray:
    """Top-1 class of every image (argmax of the first output, flattened per image)."""
    x = check_images(images)
    sess = session(model)
    name, dtype = single_input(sess)
    first = sess.get_outputs()[0].name
    out = [run(sess, [first], {name: xb.astype(dtype, copy=False)})[0] for xb in chunks(x, batch)]
    scores = np.concatenate([o.reshape(len(o), -1) for o in out])
    return scores.argmax(axis=1)


def onnx_accuracy(model: ModelLike, x, y, *, batch: int = 256) -> float:
    """Share of images whose top-1 class is their label."""
    labels = np.asarray(y).reshape(-1)
    if len(labels) != len(np.asarray(x)):
        raise InputError(f"there are {len(np.asarray(x))} images but {len(labels)} labels",
                         hint="pass one label per image")
    return float(np.mean(predictions(model, x, batch=batch) == labels))


def top1_agreement(dense: ModelLike, pruned: ModelLike, x, *, batch: int = 256) -> float:
    """Share of images where ``pruned``'s top-1 class equals ``dense``'s (no labels needed)."""
    return float(np.mean(predictions(dense, x, batch=batch) == predictions(pruned, x, batch=batch)))
