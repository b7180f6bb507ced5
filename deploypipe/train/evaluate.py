"""Inference over a dataset: logits and top-1 accuracy, in eval mode, without gradients,
leaving the model's train/eval flags as they were."""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from ..errors import InputError
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
    logits, labels = predict_logits(model, dataset, batch_size)
    return float((logits.argmax(dim=1) == labels).float().mean())
