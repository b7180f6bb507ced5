"""Inference over a dataset: logits and top-1 accuracy, in eval mode, without gradients,
leaving the model's train/eval flags as they were. In an active distributed run, ``evaluate``
splits the dataset over the ranks and sums the counts, so every rank gets the same accuracy."""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, Subset

from ..errors import InputError
from .collectives import all_reduce_sum
from .dist import active, rank, world_size
from .loaders import make_loader, model_device, preserved_modes


@torch.no_grad()
def predict_logits(model: nn.Module, dataset: Dataset, batch_size: int = 512) -> tuple[Tensor, Tensor]:
    """(logits, labels) for every item of ``dataset``, on the CPU, in dataset order."""
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise InputError("cannot evaluate on an empty dataset", hint="check the split and --limit")
    device = model_device(model)
    outs, labels = [], []
    with preserved_modes(model, False):
        for inputs, targets in make_loader(dataset, batch_size, shuffle=False):
            outs.append(model(inputs.to(device)).float().cpu())
            labels.append(targets)
    return torch.cat(outs), torch.cat(labels)


def evaluate(model: nn.Module, dataset: Dataset, batch_size: int = 512) -> float:
    """Top-1 accuracy of ``model`` on ``dataset``, in [0, 1]."""
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise InputError("cannot evaluate on an empty dataset", hint="check the split and --limit")
    correct, total = _counts(model, _my_part(dataset), batch_size)
    correct, total = all_reduce_sum([correct, total])
    return float(correct / total)


def _my_part(dataset: Dataset) -> Dataset:
    """This rank's images (every world-th, from its rank on): the whole set in a world of one."""
    if not active():
        return dataset
    return Subset(dataset, range(rank(), len(dataset), world_size()))  # type: ignore[arg-type]


def _counts(model: nn.Module, dataset: Dataset, batch_size: int) -> tuple[int, int]:
    """(correct, total) top-1 predictions; (0, 0) for an empty part."""
    if len(dataset) == 0:  # type: ignore[arg-type]
        return 0, 0
    logits, labels = predict_logits(model, dataset, batch_size)
    return int((logits.argmax(dim=1) == labels).sum()), len(labels)
