"""Where batches come from and where the model is wrapped: the two places a distributed
run (``DistributedSampler`` and ``DistributedDataParallel`` under torchrun) will change."""
from __future__ import annotations

import contextlib
import random
from typing import Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and every GPU)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_loader(dataset: Dataset, batch_size: int, *, shuffle: bool, seed: int = 0) -> DataLoader:
    """Batches of ``dataset``; shuffled by a generator of its own seed when ``shuffle``.

    A trailing batch of one image is dropped in training: BatchNorm cannot use it.
    """
    n = len(dataset)  # type: ignore[arg-type]
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    drop_last = shuffle and n > batch_size and n % batch_size == 1
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator,
                      drop_last=drop_last, num_workers=0)


def wrap_model(model: nn.Module) -> nn.Module:
    """The module that training calls forward on (the model itself until DDP exists)."""
    return model


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for an empty model)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


@contextlib.contextmanager
def preserved_modes(model: nn.Module, mode: bool) -> Iterator[nn.Module]:
    """Put ``model`` in train (``mode``) or eval mode, and restore every submodule's own
    flag afterwards (a frozen BatchNorm stays in eval); new submodules get the root's flag."""
    saved = {m: m.training for m in model.modules()}
    model.train(mode)
    try:
        yield model
    finally:
        root = saved.get(model, mode)
        for m in model.modules():
            m.training = saved.get(m, root)
