"""``create_model``: resolve a model's arguments, build it, and record how to rebuild it."""
from __future__ import annotations

import inspect
from typing import Any, Sequence

from torch import nn

from ..errors import InputError
from ._layers import positive_int, size2d
from ._registry import MODELS, ModelInfo


def list_models(include_test: bool = False) -> list[str]:
    """Registered model names, sorted; the tiny ``test_*`` variants only on request."""
    return [name for name, info in MODELS.items() if include_test or not info.test]


def model_info(name: str) -> ModelInfo:
    """The :class:`ModelInfo` of ``name`` (InputError with suggestions if unknown)."""
    return MODELS.get(name)


def _bind(info: ModelInfo, kwargs: dict[str, Any]) -> dict[str, Any]:
    """All of the factory's arguments, defaults filled in, so the record is complete."""
    sig = inspect.signature(info.factory)
    params = sig.parameters
    open_ended = any(p.kind is p.VAR_KEYWORD for p in params.values())
    unknown = sorted(set(kwargs) - set(params))
    if unknown and not open_ended:
        extra = ", ".join(sorted(set(params) - {"num_classes", "in_channels", "input_size"}))
        raise InputError(f"model {info.name!r} has no argument {unknown[0]!r}",
                         hint=f"it also takes {extra}" if extra else
                         "it takes only num_classes, in_channels and input_size")
    try:
        bound = sig.bind(**kwargs)
    except TypeError as err:  # a required factory argument left out
        raise InputError(f"model {info.name!r} cannot be built: {err}") from err
    bound.apply_defaults()
    return dict(bound.arguments)


def create_model(name: str, *, num_classes: int | None = None,
                 in_channels: int | None = None,
                 input_size: int | Sequence[int] | None = None, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name``; arguments left out take its defaults.

    ``input_size`` is N, (H, W) or (C, H, W) (C is ignored; pass ``in_channels``). The
    model carries ``deploypipe_arch = {"name", "kwargs"}`` with every resolved argument,
    so ``create_model(arch["name"], **arch["kwargs"])`` rebuilds the same architecture.
    """
    info = MODELS.get(name)
    c, h, w = info.default_input
    resolved = {
        "num_classes": positive_int(
            "num_classes", info.default_classes if num_classes is None else num_classes),
        "in_channels": positive_int("in_channels", c if in_channels is None else in_channels),
        "input_size": size2d((h, w) if input_size is None else input_size),
    }
    args = _bind(info, {**kwargs, **resolved})
    try:
        model = info.factory(**args)
    except InputError as err:
        raise InputError(f"{name}: {err.message}", hint=err.hint) from err
    args["input_size"] = list(args["input_size"])
    model.deploypipe_arch = {"name": name, "kwargs": args}
    return model
