"""Build the architecture a state_dict belongs to: a zoo name, or ``package.module:factory``
(or ``file.py:factory``) for the user's own code; ``num_classes`` and ``in_channels`` are read off the weights
when not given."""
from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping

import torch
from torch import nn

from ..errors import InputError
from ..utils.user_code import load_callable


def is_zoo_name(arch: str) -> bool:
    from ..models import list_models

    return arch in list_models(include_test=True)


def build_model(arch: str, kwargs: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    """The model ``arch`` with ``kwargs``, plus num_classes/in_channels inferred from the weights."""
    if ":" in arch:
        return _from_factory(arch, kwargs, state_dict)
    from ..models import create_model

    return create_model(arch, **{**infer_kwargs(state_dict), **kwargs})


def infer_kwargs(state_dict: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """in_channels from the first conv weight, num_classes from the last matrix weight."""
    out: dict[str, int] = {}
    weights = [(k, v) for k, v in state_dict.items() if k.endswith("weight") and isinstance(v, torch.Tensor)]
    convs = [v for _, v in weights if v.dim() == 4]
    mats = [v for _, v in weights if v.dim() == 2]
    if convs:
        out["in_channels"] = int(convs[0].shape[1])
    if mats:
        out["num_classes"] = int(mats[-1].shape[0])
    return out


def _from_factory(arch: str, kwargs: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    factory = resolve_factory(arch)
    params = _accepted(factory)
    inferred = {k: v for k, v in infer_kwargs(state_dict).items() if params is None or k in params}
    try:
        model = factory(**{**inferred, **kwargs})
    except InputError:
        raise
    except Exception as exc:  # the user's code: report, do not crash
        raise InputError(f"--arch {arch} failed to build the model ({type(exc).__name__}: {exc})",
                         hint="check the factory and the arguments it needs") from None
    if not isinstance(model, nn.Module):
        raise InputError(f"--arch {arch} returned a {type(model).__name__}, not a torch.nn.Module",
                         hint="point --arch at a function or class that builds the model")
    return model


def resolve_factory(arch: str) -> Callable[..., Any]:
    """``package.module:attr.path`` or ``path/to/file.py:attr`` -> the callable."""
    return load_callable(arch, option="--arch", example="mynets.resnet:build or models.py:build")


def _accepted(factory: Callable[..., Any]) -> set[str] | None:
    """Keyword names the factory takes; None if it takes ``**kwargs`` or cannot be inspected."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params}
