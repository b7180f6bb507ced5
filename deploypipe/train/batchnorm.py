"""BatchNorm recalibration: re-estimate every BatchNorm's running statistics from training
batches, with no gradient step.

Removing channels changes what the layers after the cut see, but their BatchNorms still
normalise with the dense model's statistics; in eval mode a pruned network can then be near
chance until it trains again. A few hundred images through the network in train mode (only
the BatchNorms; dropout and the rest stay in eval) give statistics that match the pruned
network. The estimate is the cumulative average over the batches (``momentum=None``), as
stochastic weight averaging's ``update_bn`` does; each BatchNorm's momentum is restored.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset

from .loaders import make_loader, model_device, preserved_modes


def batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorms that keep running statistics."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


def recalibrate_batchnorm(model: nn.Module, dataset: Dataset, *, batches: int, batch_size: int = 128,
                          seed: int = 0) -> int:
    """Re-estimate the running statistics of ``model``'s BatchNorms over ``batches`` shuffled
    (seeded) training batches of ``dataset``; returns the number of images seen (0 when the
    model has no BatchNorm or ``batches`` is 0). Weights are not touched; every submodule's
    train/eval flag is restored."""
    norms = batchnorms(model)
    if not norms or batches <= 0:
        return 0
    loader = make_loader(dataset, batch_size, shuffle=True, seed=seed, shard=False)
    device, momenta, seen = model_device(model), [m.momentum for m in norms], 0
    with preserved_modes(model, False), torch.no_grad():
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
            m.train()
        try:
            for i, (x, *_) in enumerate(loader):
                if i >= batches:
                    break
                model(x.to(device))
                seen += len(x)
        finally:
            for m, momentum in zip(norms, momenta):
                m.momentum = momentum
    return seen
