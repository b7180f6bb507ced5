"""Datasets by name: ``load_dataset("digits")`` -> :class:`DataSplits` (seeded, stratified,
normalised train/val/test tensors). Sources register with ``@register_dataset``; none
downloads anything."""
from __future__ import annotations

from . import builtin, cifar, files, synthetic, user  # noqa: F401  (register the sources)
from .registry import RawData, describe_datasets, list_datasets, load_dataset, register_dataset
from .splits import DataSplits

__all__ = ["DataSplits", "RawData", "describe_datasets", "list_datasets", "load_dataset", "register_dataset"]
