"""The model zoo's registry: every architecture is a :class:`ModelInfo` keyed by name."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from .._registry import Registry

Factory = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelInfo:
    """What the zoo knows about one architecture before building it.

    ``default_input`` is (C, H, W); ``test`` marks the tiny variants that exist so tests
    can cover every family in seconds; they are hidden from ``list_models()`` by default.
    """

    name: str
    family: str
    factory: Factory
    default_input: tuple[int, int, int]
    default_classes: int
    test: bool
    description: str


MODELS: Registry[ModelInfo] = Registry("model")


def register_model(
    name: str | None = None,
    *,
    family: str,
    default_input: tuple[int, int, int] = (3, 32, 32),
    default_classes: int = 10,
    test: bool = False,
) -> Callable[[Factory], Factory]:
    """Register a factory ``f(*, num_classes, in_channels, input_size, **kw) -> nn.Module``.

    The name defaults to the function's name; the description is its docstring's first
    paragraph.
    """

    def deco(factory: Factory) -> Factory:
        key = name or factory.__name__
        summary = (factory.__doc__ or "").strip().split("\n\n")[0]
        info = ModelInfo(key, family, factory, tuple(default_input), default_classes,
                         test, " ".join(summary.split()))
        MODELS.add(key, info)
        return factory

    return deco
