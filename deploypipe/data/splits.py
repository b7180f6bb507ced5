"""The value every data source produces (:class:`DataSplits`) and the seeded, stratified
index arithmetic behind it: the same seed always gives the same split."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch.utils.data import TensorDataset

from ..errors import InputError

# Fractions of a source that comes without its own split.
TRAIN_FRACTION, VAL_FRACTION = 0.70, 0.15


@dataclass(frozen=True)
class DataSplits:
    """Train/val/test tensors (float32 NCHW, normalised; int64 labels) and what they are."""

    name: str
    train: TensorDataset
    val: TensorDataset
    test: TensorDataset
    num_classes: int
    in_channels: int
    image_size: tuple[int, int]
    source: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...] = ()

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image, as a model built for this data expects it."""
        return (self.in_channels, *self.image_size)

    def sizes(self) -> tuple[int, int, int]:
        return len(self.train), len(self.val), len(self.test)

    @property
    def has_training(self) -> bool:
        """Whether there are training images (the Python API given only a ``test_loader``
        has none: it measures accuracy, and nothing is trained or calibrated on the test set)."""
        return len(self.train) > 0


def training_split(data: "DataSplits | None", what: str, *, hint: str = "pass --dataset") -> TensorDataset:
    """The training images ``what`` needs, or one sentence saying there are none: no data at
    all, or only a test set (never train or calibrate on the images accuracy is measured on).
    Only the Python API makes a test set alone, so that case's hint speaks Python."""
    if data is None:
        raise InputError(f"{what}, so it needs training data", hint=hint)
    if not data.has_training:
        raise InputError(f"{what}, so it needs training images, but only a test set was given: deploypipe "
                         "never trains or calibrates on the images it measures accuracy on",
                         hint="pass train_loader= (or dataset=) too")
    return data.train


def stratified_split(y: np.ndarray, seed: int, *, val_count: int | None = None,
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split indices of ``y`` into train/val/test per class (70/15/15), seeded.

    With ``val_count`` the split is two-way (train/val; test is empty) and val holds about
    ``val_count`` images; this serves sources that ship their own test set.
    Every split gets at least one image of every class, so each class needs three images.
    """
    rng = np.random.default_rng(seed)
    two_way = val_count is not None
    val_frac = val_count / max(len(y), 1) if two_way else VAL_FRACTION
    parts: tuple[list, list, list] = ([], [], [])
    for cls in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == cls))
        need = 2 if two_way else 3
        if len(idx) < need:
            raise InputError(f"class {cls} has only {len(idx)} image(s) but each class needs at "
                             f"least {need}, one for each split", hint="add images to that class")
        n_val = max(1, round(val_frac * len(idx)))
        n_test = 0 if two_way else max(1, round(VAL_FRACTION * len(idx)))
        n_train = len(idx) - n_val - n_test
        if n_train < 1:
            n_val -= 1
            n_train = 1
        parts[0].append(idx[:n_train])
        parts[1].append(idx[n_train:n_train + n_val])
        parts[2].append(idx[n_train + n_val:])
    return tuple(np.sort(np.concatenate(p)).astype(np.int64) for p in parts)  # type: ignore[return-value]


def stratified_subsample(index: np.ndarray, y: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """At most ``limit`` entries of ``index``, keeping class proportions; seeded, sorted."""
    if limit is None or len(index) <= limit:
        return index
    rng = np.random.default_rng(seed)
    labels = y[index]
    key = np.empty(len(index))
    for cls in np.unique(labels):
        where = rng.permutation(np.flatnonzero(labels == cls))
        key[where] = (np.arange(len(where)) + 0.5) / len(where)  # rank within class, in (0, 1)
    order = np.lexsort((rng.random(len(index)), key))
    return np.sort(index[order[:limit]])


def shuffled(index: tuple[np.ndarray, ...], seed: int) -> tuple[np.ndarray, ...]:
    """Each split's indices in a seeded random order.

    Many sources list images by class (CIFAR-10's JPEG folders, any ``folder:``), so split indices
    in file order put every image of class 0 first, and any head of a split (the first test
    images a quick evaluation reads, the first training images a subset keeps) would be one
    class. Shuffled once here, every head of every split is a fair sample."""
    rng = np.random.default_rng([seed, 0x5EED])
    return tuple(rng.permutation(ix) for ix in index)
