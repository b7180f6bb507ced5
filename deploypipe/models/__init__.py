"""The model zoo: one registry, one factory, one file per architecture family.

>>> model = create_model("resnet20", num_classes=10)
>>> rebuilt = create_model(model.deploypipe_arch["name"], **model.deploypipe_arch["kwargs"])

Families: ``resnet_cifar`` (resnet20/32/56/110), ``resnet`` (resnet18/34/50), ``mobilenet``
(mobilenet_v2), ``vgg`` (vgg11_bn/vgg16_bn); each also registers a tiny ``test_*`` variant
that ``list_models(include_test=True)`` shows. Adding a family is one file whose factories
carry ``@register_model``, imported below.
"""
from __future__ import annotations

from ._factory import create_model, list_models, model_info
from ._registry import ModelInfo, register_model
from . import mobilenet, resnet, resnet_cifar, vgg  # noqa: F401  (registers the families)

__all__ = ["ModelInfo", "create_model", "list_models", "model_info", "register_model"]
