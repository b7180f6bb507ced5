"""``save_checkpoint``: a plain dict of tensors and primitives (format tag, architecture,
per-layer widths, state_dict, metadata) that loads with ``torch.load(weights_only=True)``."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from .. import __version__
from ..errors import InputError
from ..utils.files import write_with

FORMAT = "deploypipe.checkpoint/1"


def save_checkpoint(path: str | os.PathLike, model: nn.Module, *, arch: str | None = None,
                    arch_kwargs: Mapping[str, Any] | None = None, metadata: Mapping[str, Any] | None = None,
                    widths: Mapping[str, Mapping[str, int]] | None = None) -> Path:
    """Write ``model`` atomically to ``path``; arch and arch_kwargs default to the zoo record
    ``model.deploypipe_arch``. Metadata must be JSON-like so the file stays weights-only."""
    arch, arch_kwargs = _arch_record(model, arch, arch_kwargs)
    payload = {
        "format": FORMAT,
        "arch": arch,
        "arch_kwargs": _plain(dict(arch_kwargs), "arch_kwargs"),
        "widths": _plain(dict(widths) if widths is not None else layer_widths(model), "widths"),
        "state_dict": {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()},
        "metadata": _plain({"deploypipe_version": __version__, "torch_version": torch.__version__,
                            **(metadata or {})}, "metadata"),
    }
    return write_with(path, lambda tmp: torch.save(payload, tmp))


def layer_widths(model: nn.Module) -> dict[str, dict[str, int]]:
    """{module name: {"in", "out", "groups"}} of every conv, linear, batch-norm and PReLU."""
    widths: dict[str, dict[str, int]] = {}
    for name, m in model.named_modules():
        if isinstance(m, _ConvNd):
            widths[name] = {"in": m.in_channels, "out": m.out_channels, "groups": m.groups}
        elif isinstance(m, nn.Linear):
            widths[name] = {"in": m.in_features, "out": m.out_features, "groups": 1}
        elif isinstance(m, _BatchNorm):
            widths[name] = {"in": m.num_features, "out": m.num_features, "groups": 1}
        elif isinstance(m, nn.PReLU):
            widths[name] = {"in": m.num_parameters, "out": m.num_parameters, "groups": 1}
    return widths


def _arch_record(model: nn.Module, arch: str | None, kwargs: Mapping[str, Any] | None) -> tuple[str, Mapping[str, Any]]:
    record = getattr(model, "deploypipe_arch", None) or {}
    arch = arch or record.get("name")
    if not arch:
        raise InputError("save_checkpoint needs the architecture name",
                         hint="pass arch= (a zoo name or package.module:factory) and arch_kwargs=")
    if kwargs is None:
        kwargs = record.get("kwargs", {}) if record.get("name") == arch else {}
    return arch, kwargs


def _plain(value: Any, where: str) -> Any:
    """A deep copy of JSON-like ``value`` (tuples become lists); anything else is refused."""
    if value is None:
        return None
    for kind in (bool, int, float, str):  # exact types: a str subclass is a foreign global
        if isinstance(value, kind):
            return kind(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise InputError(f"checkpoint {where} has a non-string key {k!r}", hint="use string keys")
            out[k] = _plain(v, f"{where}.{k}")
        return out
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy or torch scalar
        return value.item()
    raise InputError(f"checkpoint {where} holds a {type(value).__name__}, but a checkpoint stores only "
                     "strings, numbers, booleans, None, lists and dicts",
                     hint="convert it (e.g. str() or .tolist()) so the file loads with weights_only=True")
