"""Where batches come from and where the model is wrapped: the two places a distributed
run changes (``DistributedSampler`` and ``DistributedDataParallel`` under torchrun)."""
from __future__ import annotations

import contextlib
import random
from typing import Iterator

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, TensorDataset

from ..errors import InputError
from ..utils.log import get_logger
from .dist import active, rank, world_size

log = get_logger("train")


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and every GPU)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_loader(dataset: Dataset, batch_size: int, *, shuffle: bool, seed: int = 0,
                shard: bool | None = None) -> DataLoader:
    """Batches of ``dataset``; shuffled by a generator of its own seed when ``shuffle``.

    A trailing batch of one image is dropped in training: BatchNorm cannot use it.
    ``shard`` (default: in training, when a distributed run is active) gives each rank its
    own part of every epoch in batches of ``batch_size // world``, so that the global batch
    stays ``batch_size``; call :func:`start_epoch` before each epoch.
    """
    if shuffle and (active() if shard is None else shard):
        return _sharded_loader(dataset, batch_size, seed)
    n = len(dataset)  # type: ignore[arg-type]
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    drop_last = shuffle and lone_last_batch(n, batch_size)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator,
                      drop_last=drop_last, num_workers=0)


def lone_last_batch(n: int, batch_size: int) -> bool:
    """Whether ``n`` images in batches of ``batch_size`` end in a batch of one, which training
    drops (BatchNorm cannot normalise a single image)."""
    return n > batch_size and n % batch_size == 1


def rank_batch_size(batch_size: int, world: int) -> int:
    """Each rank's share of a global batch: ``batch_size // world``. A remainder is dropped
    (the global batch becomes a multiple of ``world``) and said once, rather than giving
    ranks unequal batches, whose equally weighted gradients would not average to the mean."""
    if batch_size < world:
        raise InputError(f"a batch of {batch_size} cannot be split over {world} processes",
                         hint=f"use --batch-size {world} or more, or fewer processes")
    if batch_size % world:
        log.warning("batch %d does not split evenly over %d processes: each takes %d (global batch %d)",
                    batch_size, world, batch_size // world, batch_size // world * world)
    return batch_size // world


def start_epoch(loader: "DataLoader | ResidentBatches", epoch: int) -> None:
    """Tell a sharded or resident loader which epoch begins (a new shuffle; for a sharded
    one, shared by every rank)."""
    if isinstance(loader, ResidentBatches):
        loader.epoch = epoch
        return
    sampler = loader.sampler
    if isinstance(sampler, DistributedSampler):
        sampler.set_epoch(epoch)


class ResidentBatches:
    """A tensor dataset held on the training device, served in shuffled batches cut by one
    index operation on the device (no per-image fetching and collation): on a GPU an epoch
    of CIFAR-10 is then bound by the model, not by the loader. Each epoch's order comes from
    the seed and the epoch (:func:`start_epoch`); a trailing batch of one image is dropped
    (BatchNorm cannot train on it)."""

    def __init__(self, dataset: TensorDataset, batch_size: int, device: torch.device, seed: int = 0):
        self.tensors = tuple(t.to(device) for t in dataset.tensors)
        self.batch_size, self.seed, self.epoch = batch_size, seed, 0
        n = len(self.tensors[0])
        self.count = n - 1 if lone_last_batch(n, batch_size) else n

    def __len__(self) -> int:
        return -(-self.count // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(len(self.tensors[0]), generator=generator)[:self.count]
        order = order.to(self.tensors[0].device)
        for start in range(0, self.count, self.batch_size):
            index = order[start:start + self.batch_size]
            yield tuple(t[index] for t in self.tensors)


def training_batches(dataset: Dataset, batch_size: int, device: torch.device,
                     seed: int) -> "DataLoader | ResidentBatches":
    """The training loader: a tensor dataset is held on a GPU (:class:`ResidentBatches`);
    anything else, on the CPU, or sharded over ranks goes through :func:`make_loader`."""
    if device.type == "cuda" and isinstance(dataset, TensorDataset) and not active():
        return ResidentBatches(dataset, batch_size, device, seed)
    return make_loader(dataset, batch_size, shuffle=True, seed=seed)


def _sharded_loader(dataset: Dataset, batch_size: int, seed: int) -> DataLoader:
    """Every rank gets ceil(n / world) images per epoch (padded by repeats, so all ranks take
    the same number of steps, which DDP needs), in batches of ``rank_batch_size``."""
    world = world_size()
    per_rank = rank_batch_size(batch_size, world)
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank(), shuffle=True, seed=seed)
    n = len(sampler)
    drop_last = lone_last_batch(n, per_rank)
    return DataLoader(dataset, batch_size=per_rank, sampler=sampler, drop_last=drop_last, num_workers=0)


def wrap_model(model: nn.Module) -> nn.Module:
    """The module that training calls forward on: the model itself, or, in an active
    distributed run, ``DistributedDataParallel`` around it (which broadcasts rank 0's
    parameters and buffers and averages gradients over ranks at every backward)."""
    if not active():
        return model
    device = model_device(model)
    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


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
