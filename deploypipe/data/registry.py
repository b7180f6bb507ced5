"""The dataset registry and ``load_dataset``: a spec ``name`` or ``name:ARG`` picks a source,
which returns raw images; splitting, subsampling, resizing, channel matching and
normalisation happen here, the same way for every source."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch
from torch.utils.data import TensorDataset

from .._registry import Registry
from ..errors import InputError
from ..utils.log import get_logger
from . import prepare
from .splits import DataSplits, shuffled, stratified_split, stratified_subsample

log = get_logger("data")


@dataclass
class RawData:
    """Images (N,C,H,W) as a source found them, with labels and any split it ships with.

    ``test_index`` alone: train/val are split from the rest (val as large as test);
    ``test_index`` and ``val_index``: train is the rest; neither: 70/15/15 by seed.
    """

    x: np.ndarray
    y: np.ndarray
    source: str
    class_names: tuple[str, ...] = ()
    test_index: np.ndarray | None = None
    val_index: np.ndarray | None = None
    mean: tuple[float, ...] | None = None  # the statistics the images are normalised with, when the
    std: tuple[float, ...] | None = None  # source knows them (else: computed on the training split)


class DatasetSource(Protocol):
    def __call__(self, arg: str | None, *, image_size: tuple[int, int] | None) -> RawData: ...


DATASETS: Registry[DatasetSource] = Registry("dataset")


def register_dataset(name: str) -> Callable[[DatasetSource], DatasetSource]:
    """Decorator: ``@register_dataset("digits")`` on ``fn(arg, *, image_size) -> RawData``."""
    return DATASETS.register(name)


def list_datasets() -> list[str]:
    return DATASETS.names()


def describe_datasets() -> dict[str, str]:
    """Name -> first docstring line of each source, for ``deploypipe list datasets``."""
    return {name: (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
            for name, fn in DATASETS.items()}


def load_dataset(spec: str, *, seed: int = 0, image_size: int | tuple[int, int] | None = None,
                 in_channels: int | None = None, limit: int | None = None,
                 mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None) -> DataSplits:
    """Load ``spec`` (``digits``, ``mnist``, ``mnist:DIR``, ``folder:DIR``, ``npz:FILE``,
    ``cifar10:PATH``, ``py:MODULE:FUNCTION``, ``synthetic[:k=v,...]``) as seeded, stratified,
    normalised train/val/test splits. ``mean``/``std`` (per channel, or one value for all) are
    the statistics the model was trained with; they override the source's and the ones
    computed from the training split."""
    _check_positive(limit, "limit")
    _check_positive(in_channels, "in_channels")
    size = _as_size(image_size)
    name, arg = parse_spec(spec)
    raw = DATASETS.get(name)(arg, image_size=size)
    y = prepare.check_labels(raw.y, len(raw.x), f"dataset {spec!r}")
    if len(np.unique(y)) < 2:  # folder: refused this itself; npz: and py: trained on it
        raise InputError(f"dataset {spec!r} has a single class (label {int(y[0])})",
                         hint="a classifier needs images of at least two classes")
    index = _split_index(raw, y, seed)
    index = tuple(stratified_subsample(ix, y, limit, seed + k) for k, ix in enumerate(index))
    index = shuffled(index, seed)
    if (mean is None) != (std is None):
        raise InputError("a mean was given without a std, or a std without a mean",
                         hint="pass both --mean and --std (per channel), or neither")
    if mean is not None:
        raw = dataclasses.replace(raw, mean=tuple(mean), std=tuple(std))
    splits = _build(spec, raw, y, index, size, in_channels)
    log.debug("dataset %s: %d/%d/%d images %s, %s", spec, *splits.sizes(), splits.input_shape, splits.source)
    return splits


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``name:ARG`` -> (name, ARG); an existing path without a prefix is guessed from its kind."""
    spec = spec.strip()
    if not spec:
        raise InputError("empty dataset name", hint=f"choose one of: {', '.join(list_datasets())}")
    name, sep, arg = spec.partition(":")
    if name in DATASETS:
        return name, (arg if sep else None)
    path = Path(spec)
    if path.suffix == ".npz" and path.exists():
        return "npz", spec
    if path.is_dir():
        return "folder", spec
    return name, (arg if sep else None)  # an unknown name: the registry says so


def dataset_path(spec: str | None) -> Path | None:
    """The file or folder a dataset spec reads (``folder:``, ``npz:``, ``mnist:``, ``cifar10:``,
    the file of ``py:file.py:function``), so that no output is written over or into it."""
    if not spec:
        return None
    try:
        name, arg = parse_spec(spec)
    except InputError:
        return None
    if not arg or name not in ("npz", "folder", "mnist", "cifar10", "py"):
        return None
    if name == "py":
        arg = arg.rpartition(":")[0] or arg
    path = (Path(arg.split(",")[0]) if name != "folder" else Path(arg)).expanduser()
    return path if path.exists() else None


def _split_index(raw: RawData, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if raw.test_index is None:
        return stratified_split(y, seed)
    rest = np.setdiff1d(np.arange(len(y)), raw.test_index)
    if raw.val_index is not None:
        return np.setdiff1d(rest, raw.val_index), np.sort(raw.val_index), np.sort(raw.test_index)
    train, val, _ = stratified_split(y[rest], seed, val_count=len(raw.test_index))
    return rest[train], rest[val], np.sort(raw.test_index)


def _build(spec: str, raw: RawData, y: np.ndarray, index: tuple[np.ndarray, ...],
           size: tuple[int, int] | None, in_channels: int | None) -> DataSplits:
    parts = []
    for ix in index:
        x = prepare.to_unit_float(raw.x[ix])
        x = prepare.resize(x, size) if size else x
        parts.append(prepare.match_channels(x, in_channels, spec))
    mean, std = _statistics(raw, parts[0], spec)
    sets = [TensorDataset(torch.from_numpy(prepare.normalise(x, mean, std)), torch.from_numpy(y[ix]))
            for x, ix in zip(parts, index)]
    num_classes = max(int(y.max()) + 1, len(raw.class_names))
    return DataSplits(name=spec, train=sets[0], val=sets[1], test=sets[2], num_classes=num_classes,
                      in_channels=int(parts[0].shape[1]), image_size=tuple(parts[0].shape[2:]),
                      source=raw.source, mean=tuple(float(m) for m in mean),
                      std=tuple(float(s) for s in std), class_names=raw.class_names)


def _statistics(raw: RawData, train: np.ndarray, spec: str) -> tuple[np.ndarray, np.ndarray]:
    """The source's (or the caller's) normalisation, else the training split's own."""
    if raw.mean is None:
        return prepare.channel_stats(train)
    channels = train.shape[1]
    mean, std = (np.asarray(v, dtype=np.float64) for v in (raw.mean, raw.std))
    for name, v in (("mean", mean), ("std", std)):
        if v.ndim != 1 or len(v) not in (1, channels):
            raise InputError(f"dataset {spec!r}: the {name} has {v.size} values for {channels}-channel images",
                             hint=f"give one value per channel ({channels}) or one for all")
    if np.any(std <= 0) or not np.all(np.isfinite(np.concatenate([mean, std]))):
        raise InputError(f"dataset {spec!r}: the std {tuple(std)} must be finite and positive",
                         hint="give the per-channel standard deviations the model was trained with")
    return np.broadcast_to(mean, (channels,)).copy(), np.broadcast_to(std, (channels,)).copy()


def _as_size(image_size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if image_size is None:
        return None
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or any(int(s) <= 0 for s in size):
        raise InputError(f"image size {image_size!r} is not a positive size", hint="give e.g. 32 or (28, 28)")
    return int(size[0]), int(size[1])


def _check_positive(value: int | None, what: str) -> None:
    if value is not None and value <= 0:
        raise InputError(f"{what} must be a positive integer, got {value}", hint=f"omit {what} or give a number above 0")
