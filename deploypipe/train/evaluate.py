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


def check_model_on_data(model: nn.Module, data, *, scored_by_eval_fn: bool = False) -> None:
    """Run ``model`` on two test images before any work: it must take the data's images and, to
    be trained, scored or measured here, return class logits (N, classes) covering its labels."""
    x, _ = (data.test if len(data.test) else data.train)[:2]
    try:
        with torch.no_grad(), preserved_modes(model, False):
            out = model(x.to(model_device(model)))
    except Exception as exc:  # a shape or channel mismatch, said by torch
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:240]
        raise InputError(f"the model cannot run on the data's images of shape {tuple(x.shape[1:])}: {first}",
                         hint="give images with the channels and size the model takes") from None
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        if scored_by_eval_fn and not data.has_training:
            return  # only measured, and by the caller's own function
        what = f"a {type(out).__name__}" if not isinstance(out, torch.Tensor) else f"a tensor of shape {tuple(out.shape)}"
        raise InputError(f"the model returns {what}, but deploypipe trains, scores and measures classifiers "
                         "on logits of shape (N, classes)", hint="return the class logits from forward")
    labels = torch.cat([s.tensors[1] for s in (data.train, data.test) if len(s)])
    if len(labels) and (int(labels.max()) >= out.shape[1] or int(labels.min()) < 0):
        raise InputError(f"the labels run from {int(labels.min())} to {int(labels.max())}, but the model has "
                         f"{out.shape[1]} outputs", hint="label classes 0 to classes-1, or give a model with "
                                                        "an output per class")
