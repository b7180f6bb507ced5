"""``py:MODULE:FUNCTION`` or ``py:FILE.py:FUNCTION``: images from the user's own code.

The function takes no arguments and returns one of:

* ``(x, y)``: images and labels (numpy arrays or tensors), split 70/15/15 by the seed;
* a ``Dataset`` or ``DataLoader`` yielding ``(image, label)`` pairs or batches, split likewise;
* a dict with ``"train"`` and ``"test"`` (and optionally ``"val"``), each of the forms above,
  whose splits are kept; it may add ``"class_names"``, and ``"mean"``/``"std"`` (per channel,
  the statistics the user's model was trained with) that replace the ones deploypipe would
  compute from the training split; ``"normalised": True`` says the images already are.

Images are (N,H,W), (N,C,H,W) or (N,H,W,C), 8-bit or float, before normalisation unless the
dict says otherwise. Labels are integer class indices; ``None`` labels (unlabeled images)
are refused here (calibration-only data has its own path).
"""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import torch

from ..errors import InputError
from ..utils.user_code import load_callable
from .prepare import to_nchw
from .registry import RawData, register_dataset

SPLITS = ("train", "val", "test")


@register_dataset("py")
def python_source(arg: str | None, *, image_size: tuple[int, int] | None) -> RawData:
    """py:MODULE:FUNCTION or py:FILE.py:FUNCTION: (x, y) arrays, a Dataset/DataLoader, or {train, test}."""
    if not arg:
        raise InputError("dataset py: needs the function that returns the data",
                         hint="write --dataset py:mydata.py:load or py:package.module:load")
    fn = load_callable(arg, option="--dataset py:", example="mydata.py:load")
    spec = f"py:{arg}"
    try:
        obj = fn()
    except SystemExit as exc:  # would end deploypipe with its code: exit 0 and nothing written
        raise InputError(f"{spec}: the function called sys.exit({exc.code!r}) instead of returning the data",
                         hint="return (x, y) arrays, a Dataset or a DataLoader") from None
    except Exception as exc:  # the user's function failed: one line, not their traceback
        raise InputError(f"{spec}: the function raised {type(exc).__name__}: {exc}",
                         hint="call it in Python to see the full error") from None
    if isinstance(obj, dict):
        return _from_dict(obj, spec)
    x, y = to_arrays(obj, spec)
    return RawData(to_nchw(x, spec), y, f"{spec} (split 70/15/15 by the seed)")


def _from_dict(obj: dict, spec: str) -> RawData:
    unknown = set(obj) - {*SPLITS, "class_names", "mean", "std", "normalised"}
    if unknown or "train" not in obj or "test" not in obj:
        raise InputError(f"{spec} returned a dict with keys {sorted(obj)}; it needs 'train' and 'test'",
                         hint="return {'train': (x, y), 'test': (x, y)} and optionally 'val', 'class_names', "
                              "'mean', 'std', 'normalised'")
    parts = {k: to_arrays(obj[k], f"{spec} {k!r}") for k in SPLITS if k in obj}
    parts = {k: (to_nchw(x, f"{spec} {k!r}"), y) for k, (x, y) in parts.items()}
    x = np.concatenate([p[0] for p in parts.values()])
    y = np.concatenate([p[1] for p in parts.values()])
    bounds = np.cumsum([0] + [len(p[0]) for p in parts.values()])
    index = {k: np.arange(bounds[i], bounds[i + 1]) for i, k in enumerate(parts)}
    mean, std = _stats(obj, spec)
    return RawData(x, y, f"{spec} ({', '.join(f'{len(v)} {k}' for k, v in index.items())} images, splits as given)",
                   class_names=tuple(str(c) for c in obj.get("class_names", ())),
                   test_index=index["test"], val_index=index.get("val"), mean=mean, std=std)


def _stats(obj: dict, spec: str) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    if obj.get("normalised"):
        return (0.0,), (1.0,)
    if ("mean" in obj) != ("std" in obj):
        raise InputError(f"{spec} gave {'mean' if 'mean' in obj else 'std'} without the other",
                         hint="return both 'mean' and 'std' (per channel), or neither")
    if "mean" not in obj:
        return None, None
    return tuple(float(v) for v in np.ravel(obj["mean"])), tuple(float(v) for v in np.ravel(obj["std"]))


def to_arrays(obj: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) numpy arrays from a pair, a map-style Dataset or an iterable of batches."""
    if isinstance(obj, (tuple, list)) and len(obj) == 2 and not _is_sample(obj):
        x, y = _numpy(obj[0], what), _numpy(obj[1], what)
        if len(x) == 0 or len(y) == 0:
            raise InputError(f"{what} holds no images", hint="return at least one image of every class")
        return x, y
    if hasattr(obj, "__getitem__") and hasattr(obj, "__len__") and not isinstance(obj, (tuple, list)):
        return _stack((obj[i] for i in range(len(obj))), what)
    if isinstance(obj, Iterable):
        return _stack(iter(obj), what)
    raise InputError(f"{what} is a {type(obj).__name__}, not images and labels",
                     hint="return (x, y) arrays, a Dataset, a DataLoader or {'train': ..., 'test': ...}")


def _is_sample(pair) -> bool:
    """A single (image, label) pair rather than (images, labels)."""
    return np.ndim(pair[1]) == 0 and np.ndim(pair[0]) >= 2


def _stack(items, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Samples (a scalar label) and batches (a label per image) alike, concatenated."""
    xs, ys = [], []
    for item in items:
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise InputError(f"{what} yields {type(item).__name__} items, not (image, label) pairs",
                             hint="make it yield (image, label) or (images, labels)")
        x, y = _numpy(item[0], what), _numpy(item[1], what)
        xs.append(x[None] if y.ndim == 0 else x)
        ys.append(np.atleast_1d(y))
    if not xs:
        raise InputError(f"{what} is empty", hint="return at least one image per split")
    return np.concatenate(xs), np.concatenate(ys)


def _numpy(value: Any, what: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except Exception:  # noqa: BLE001  (anything numpy cannot take)
        raise InputError(f"{what} holds a {type(value).__name__}, which is not an array",
                         hint="return numpy arrays or tensors") from None


def _check_labels(y: np.ndarray, what: str) -> None:
    """Class labels: whole numbers from 0 (a float 3.7 would be cut to class 3 in silence)."""
    if y.ndim != 1:
        raise InputError(f"{what} yields labels of shape {y.shape[1:]} per image, not one class number",
                         hint="yield (images, labels) with one integer label per image")
    if y.dtype.kind not in "iub" and not (y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y))):
        raise InputError(f"{what} yields labels such as {float(y.flat[0]):g} that are not whole class numbers",
                         hint="label classes 0, 1, 2, ...")
    if len(y) and y.min() < 0:
        raise InputError(f"{what} yields the negative label {int(y.min())}", hint="label classes 0, 1, 2, ...")


def splits_from_loaders(train_loader: Any, test_loader: Any, input_shape=None):
    """The caller's loaders as deploypipe's train/val/test tensors (val: the test data, used
    only for the per-epoch log line), their preprocessing kept. Only a ``test_loader``: no
    training images (accuracy is measured on it; nothing trains or calibrates on it). Only a
    ``train_loader``: it is the test data too."""
    from torch.utils.data import TensorDataset

    from .splits import DataSplits

    given = (("train", train_loader), ("test", test_loader))
    parts = {k: to_arrays(v, f"{k}_loader") for k, v in given if v is not None}
    if "train" not in parts:
        x, y = parts["test"]
        parts["train"] = (x[:0], y[:0])
    parts.setdefault("test", parts["train"])
    for k, (x, y) in parts.items():
        _check_labels(np.asarray(y), f"{k}_loader")
    if parts["train"][0].shape[1:] != parts["test"][0].shape[1:] and len(parts["train"][0]):
        raise InputError(f"train_loader yields images of shape {tuple(parts['train'][0].shape[1:])} but "
                         f"test_loader {tuple(parts['test'][0].shape[1:])}", hint="give both the same preprocessing")
    sets = {k: TensorDataset(torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.int64))
            for k, (x, y) in parts.items()}
    x = sets["train"].tensors[0]
    if x.ndim != 4:
        raise InputError(f"the loader yields images of shape {tuple(x.shape[1:])}, not (C, H, W)",
                         hint="yield batches of (N, C, H, W) images")
    if input_shape is not None and tuple(x.shape[1:]) != tuple(input_shape):
        raise InputError(f"the loader yields images of shape {tuple(x.shape[1:])} but example_inputs "
                         f"says {tuple(input_shape)}", hint="make them agree")
    labels = torch.cat([s.tensors[1] for s in sets.values()])
    channels = int(x.shape[1])
    return DataSplits(name="python loaders", train=sets["train"], val=sets["test"], test=sets["test"],
                      num_classes=int(labels.max()) + 1, in_channels=channels, image_size=tuple(x.shape[2:]),
                      source="the caller's DataLoaders, as they yield the images",
                      mean=(0.0,) * channels, std=(1.0,) * channels)
