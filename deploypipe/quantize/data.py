"""Images for calibration and verification, shaped for the model's one image input.

The build's data (a :class:`~deploypipe.data.DataSplits`) is already normalised the way the
model was trained; ``deploypipe quantize`` loads a dataset at the model's own channels and
size. Calibration takes seeded batches of the *training* split; verification the *test*
split, which calibration never sees.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np

from ..errors import UnsupportedError

if TYPE_CHECKING:
    import onnx

    from ..data import DataSplits

_FLOAT = 1  # onnx.TensorProto.FLOAT


@dataclass(frozen=True)
class ImageInput:
    """The model's one float input (N, C, H, W); ``None`` where the model leaves a dim dynamic."""

    name: str
    batch: int | None
    channels: int | None
    size: tuple[int, int] | None

    def batches(self, x: np.ndarray, size: int) -> Iterator[np.ndarray]:
        """``x`` in batches of ``size`` (of the model's own batch when it fixes one; the last
        batch is then filled up with repeats of its last image)."""
        size = self.batch or size
        for start in range(0, len(x), size):
            part = x[start:start + size]
            if self.batch and len(part) < size:
                part = np.concatenate([part, np.repeat(part[-1:], size - len(part), axis=0)])
            yield part


def image_input(model: "onnx.ModelProto", where: str = "the model") -> ImageInput:
    """The one 4-D float32 input of ``model``; anything else is refused in one sentence."""
    inits = {t.name for t in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in inits]
    if len(inputs) != 1:
        raise UnsupportedError(f"{where} has {len(inputs)} inputs, and quantizing on a dataset needs one image input",
                               hint="quantize a model with a single (N, C, H, W) float input")
    t = inputs[0].type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
    if t.elem_type != _FLOAT or len(dims) != 4:
        raise UnsupportedError(f"input {inputs[0].name!r} of {where} is not a float32 image batch (N, C, H, W)",
                               hint="quantize a model with a single (N, C, H, W) float input")
    size = (dims[2], dims[3]) if dims[2] and dims[3] else None
    return ImageInput(inputs[0].name, dims[0], dims[1], size)


def load_images(spec: str, image: ImageInput, *, seed: int = 0, limit: int | None = None) -> "DataSplits":
    """``spec`` loaded at the model's channels and size (resized and channel-matched as
    :func:`deploypipe.data.load_dataset` does)."""
    from ..data import load_dataset

    return load_dataset(spec, seed=seed, image_size=image.size, in_channels=image.channels, limit=limit)


def calibration_images(data: "DataSplits", batches: int, batch_size: int, seed: int = 0) -> np.ndarray:
    """``batches * batch_size`` training images (all of them if fewer), in a seeded order."""
    from ..data.splits import training_split

    x = training_split(data, "int8 calibration measures activation ranges on images").tensors[0].numpy()
    order = np.random.default_rng(seed).permutation(len(x))[:batches * batch_size]
    return np.ascontiguousarray(x[np.sort(order)], dtype=np.float32)


def held_out(data: "DataSplits", limit: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``limit`` test images and labels."""
    x, y = data.test.tensors
    return np.ascontiguousarray(x[:limit].numpy(), dtype=np.float32), y[:limit].numpy()


def feed_reader(feeds: Sequence[dict[str, np.ndarray]]):
    """ONNX Runtime's calibration reader over ready feeds (a fresh reader each call)."""
    from onnxruntime.quantization import CalibrationDataReader

    class _Feeds(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(feeds)

        def get_next(self):
            return next(self._it, None)

    return _Feeds()
