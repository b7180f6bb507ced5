"""Rebuild a model's layers at the widths a (pruned) state_dict was saved with.

A pruned checkpoint holds the zoo's keys with fewer channels. Instead of pickling the
slimmed modules, the loader builds the dense architecture and replaces every layer whose
saved shapes differ by a layer of the saved shapes; ``load_state_dict`` then fills it.
"""
from __future__ import annotations

from typing import Callable, Mapping

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from ..errors import InputError, UnsupportedError

Shapes = dict[str, tuple[int, ...]]


def resize_to_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """Replace, in place, each Conv (incl. grouped, depthwise and transposed), BatchNorm,
    Linear and PReLU whose tensors in ``state_dict`` have other shapes than the module's;
    returns the names of the replaced modules. Values are not copied: load them next."""
    resized = []
    for name, module in list(model.named_modules()):
        builder = _builder(module) if name else None  # the root cannot be replaced in place
        saved = _saved_shapes(module, name, state_dict) if builder else {}
        if not saved or all(_shape(module, k) == v for k, v in saved.items()):
            continue
        try:
            new = builder(module, saved, name)  # type: ignore[misc]
        except TypeError as exc:
            raise UnsupportedError(f"cannot rebuild layer {name!r} ({type(module).__name__}) at its saved "
                                   f"widths ({exc})", hint="save it with the standard torch layer classes") from None
        new.train(module.training)
        _replace(model, name, new)
        resized.append(name)
    return resized


def _builder(module: nn.Module) -> Callable[[nn.Module, Shapes, str], nn.Module] | None:
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        return _conv_transpose
    if isinstance(module, _ConvNd):
        return _conv
    if isinstance(module, _BatchNorm):
        return _batchnorm
    if isinstance(module, nn.Linear):
        return _linear
    if isinstance(module, nn.PReLU):
        return _prelu
    return None


def _saved_shapes(module: nn.Module, name: str, state_dict: Mapping[str, torch.Tensor]) -> Shapes:
    prefix = f"{name}." if name else ""
    keys = [k for k, _ in module.named_parameters(recurse=False)] + [k for k, _ in module.named_buffers(recurse=False)]
    return {k: tuple(state_dict[prefix + k].shape) for k in keys
            if prefix + k in state_dict and k != "num_batches_tracked"}


def _shape(module: nn.Module, key: str) -> tuple[int, ...] | None:
    tensor = getattr(module, key, None)
    return tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else None


def _factory_kwargs(module: nn.Module) -> dict:
    ref = next(iter(module.parameters()), None)
    return {"device": ref.device, "dtype": ref.dtype} if ref is not None else {}


def _conv(module: _ConvNd, saved: Shapes, name: str) -> nn.Module:
    """Conv weight (out, in/groups, *k). A grouped conv is pruned as channel surgery prunes
    it (:func:`deploypipe.graph.ops.keeps_groups`): either by whole groups (the output
    channels per group stay and ``groups`` follows; a depthwise conv keeps groups ==
    in_channels with its channel multiplier) or by the same positions in every group
    (``groups`` stays)."""
    out, per_group, *kernel = saved["weight"]
    groups = _saved_groups(module, out, module.out_channels, name, saved["weight"])
    if module.groups > 1 and module.groups == module.in_channels:
        _need(per_group == 1, name, saved["weight"], f"a depthwise conv with multiplier {out // groups}")
    return type(module)(per_group * groups, out, tuple(kernel), stride=module.stride, padding=module.padding,
                        dilation=module.dilation, groups=groups, bias=module.bias is not None,
                        padding_mode=module.padding_mode, **_factory_kwargs(module))


def _conv_transpose(module: nn.modules.conv._ConvTransposeNd, saved: Shapes, name: str) -> nn.Module:
    """ConvTranspose weight (in, out/groups, *k); groups follow as for _conv."""
    cin, per_group, *kernel = saved["weight"]
    groups = _saved_groups(module, cin, module.in_channels, name, saved["weight"])
    return type(module)(cin, per_group * groups, tuple(kernel), stride=module.stride, padding=module.padding,
                        output_padding=module.output_padding, groups=groups, bias=module.bias is not None,
                        dilation=module.dilation, padding_mode=module.padding_mode, **_factory_kwargs(module))


def _saved_groups(module: _ConvNd, saved_full: int, full: int, name: str, shape: tuple[int, ...]) -> int:
    """The group count of a conv whose weight axis 0 (``full`` channels) was saved with
    ``saved_full``: the same when pruned by positions, else whole groups of ``full/groups``."""
    from ..graph.ops import keeps_groups

    if module.groups == 1:
        return 1
    if keeps_groups(module.groups, module.in_channels // module.groups, module.out_channels // module.groups):
        _need(saved_full % module.groups == 0, name, shape, f"{module.groups} groups")
        return module.groups
    per_group = full // module.groups
    _need(saved_full % per_group == 0, name, shape, f"groups of {per_group} channels")
    return saved_full // per_group


def _batchnorm(module: _BatchNorm, saved: Shapes, name: str) -> nn.Module:
    features = next(iter(saved.values()))[0]
    return type(module)(features, eps=module.eps, momentum=module.momentum, affine=module.affine,
                        track_running_stats=module.track_running_stats, **_factory_kwargs(module))


def _linear(module: nn.Linear, saved: Shapes, name: str) -> nn.Module:
    out, cin = saved["weight"]
    return type(module)(cin, out, bias=module.bias is not None, **_factory_kwargs(module))


def _prelu(module: nn.PReLU, saved: Shapes, name: str) -> nn.Module:
    return type(module)(num_parameters=saved["weight"][0], **_factory_kwargs(module))


def _need(ok: bool, name: str, shape: tuple[int, ...], what: str) -> None:
    if not ok:
        raise InputError(f"layer {name!r} was saved with weight shape {shape}, which does not fit {what}",
                         hint="check that the checkpoint belongs to this architecture")


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)
