"""A model's outputs, however nested, as one flat list of tensors."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import UnsupportedError

if TYPE_CHECKING:  # torch loads lazily: `deploypipe --help` must not need it
    import torch


def flat_tensors(out: object, *, hint: str) -> list["torch.Tensor"]:
    """The tensors of ``out`` (a tensor, or tuples, lists and dicts of them) in order;
    ``hint`` says what model to use instead when something else is in it."""
    import torch

    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in flat_tensors(o, hint=hint)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in flat_tensors(o, hint=hint)]
    raise UnsupportedError(f"the model returns a {type(out).__name__}, not tensors", hint=hint)
