"""The reconstruct stage of ``deploypipe build model.onnx --dataset ...``: with no PyTorch
model there is no fine-tuning, so the pruned graph is refitted layer by layer on calibration
images (:func:`deploypipe.graph.refit.refit`), and dense, plainly pruned and refitted models
are all scored through ONNX Runtime on the test split."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from ..graph.shapes import graph_inputs
from ..utils.log import get_logger
from .config import BuildConfig

log = get_logger("build")
CALIBRATION_IMAGES = 512


@dataclass(frozen=True)
class Reconstruction:
    """What the stage measured; ``model`` is the refitted graph the build delivers."""

    model: Any  # onnx.ModelProto
    dense_accuracy: float
    accuracy: float
    summary: dict[str, Any] | None  # None: nothing was refitted


def load_images(config: BuildConfig, model: onnx.ModelProto):
    """The dataset at the graph's input channels and size, or None without ``--dataset``."""
    from ..data import load_dataset

    if config.data.dataset is None and config.data.splits is None:
        return None
    if config.data.splits is not None:
        return config.data.splits
    dims = [d.dim_value for d in graph_inputs(model)[0].type.tensor_type.shape.dim]
    size = (dims[2], dims[3]) if len(dims) == 4 and dims[2] > 0 and dims[3] > 0 else None
    channels = dims[1] if len(dims) == 4 and dims[1] > 0 else None
    return load_dataset(config.data.dataset, seed=config.seed, image_size=size, in_channels=channels,
                        limit=config.data.limit, mean=config.data.mean, std=config.data.std)


def reconstruct(analysis, small: onnx.ModelProto, drop, data, seed: int) -> Reconstruction:
    """Refit ``small`` on training images; accuracy of dense, plain and refitted models, and
    the refitted model's top-1 agreement with the dense one, on the test split."""
    from ..graph.evaluate import onnx_accuracy, top1_agreement
    from ..graph.refit import refit

    x_train = data.train.tensors[0].numpy()
    order = np.random.default_rng(seed).permutation(len(x_train))[:CALIBRATION_IMAGES]
    x, y = (t.numpy() for t in data.test.tensors)
    fitted, summary = refit(analysis, small, drop, x_train[np.sort(order)], seed=seed)
    dense = onnx_accuracy(analysis.model, x, y)
    plain, after = onnx_accuracy(small, x, y), onnx_accuracy(fitted, x, y)
    record = {**summary.to_dict(), "test_images": int(len(y)), "accuracy_dense": dense,
              "accuracy_removed": plain, "accuracy_refit": after,
              "agreement_removed": top1_agreement(analysis.model, small, x),
              "agreement_refit": top1_agreement(analysis.model, fitted, x)}
    log.info("reconstruction: accuracy %.2f%% after plain removal, %.2f%% refitted (dense %.2f%%), "
             "%d layers refitted on %d images", 100 * plain, 100 * after, 100 * dense, len(summary.layers),
             summary.images)
    return Reconstruction(fitted, dense, after, record)


def evaluated(analysis, small: onnx.ModelProto, data) -> Reconstruction:
    """Accuracy of the dense and the plainly pruned graph on the test split, nothing refitted:
    for a test set alone (never refit on the images accuracy is measured on)."""
    from ..graph.evaluate import onnx_accuracy

    x, y = (t.numpy() for t in data.test.tensors)
    dense, plain = onnx_accuracy(analysis.model, x, y), onnx_accuracy(small, x, y)
    log.info("no training images: nothing refitted; accuracy %.2f%% after plain removal (dense %.2f%%)",
             100 * plain, 100 * dense)
    return Reconstruction(small, dense, plain, None)
