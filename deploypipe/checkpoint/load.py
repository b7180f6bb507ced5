"""``load_model``: any PyTorch model file -> an eval-mode ``nn.Module`` and what is known
about it. deploypipe checkpoints, plain state_dicts (with an architecture), TorchScript
and ``torch.export`` programs load without running code from the file; a pickled module
loads only when the user trusts it."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ..errors import InputError
from ..utils.log import get_logger
from . import arch as arch_mod
from .safe_load import torch_load
from .save import FORMAT
from .sniff import TORCH_EXPORT, TORCHSCRIPT, sniff
from .state import check_finite, find_state_dict, load_weights

log = get_logger("checkpoint")


@dataclass
class LoadedModel:
    """A loaded model in eval mode; ``input_shape`` is (C, H, W) where the file says it."""

    model: nn.Module
    arch: str | None
    arch_kwargs: dict[str, Any]
    input_shape: tuple[int, int, int] | None
    num_classes: int | None
    metadata: dict[str, Any]
    source_format: str  # deploypipe | state_dict | torchscript | torch.export | pickled_module
    path: Path
    resized: tuple[str, ...] = field(default=())


def load_model(path: str | os.PathLike, *, arch: str | None = None, arch_kwargs: Mapping[str, Any] | None = None,
               trust_model: bool = False) -> LoadedModel:
    """Load ``path``; ``arch``/``arch_kwargs`` build the model for a plain state_dict (a
    deploypipe checkpoint's own architecture may be named again, or another given with
    ``arch``; ``arch_kwargs`` that contradict the ones it records are refused). The file is
    only read, never changed."""
    path = Path(path)
    kind = sniff(path)
    if kind == TORCHSCRIPT:
        loaded = _torchscript(path)
    elif kind == TORCH_EXPORT:
        loaded = _exported(path)
    else:
        loaded = _from_object(torch_load(path, trust_model=trust_model), path, arch, dict(arch_kwargs or {}))
    check_finite(loaded.model, repr(str(path)))
    if kind != TORCH_EXPORT:  # an exported graph has its mode baked in and refuses eval()
        loaded.model.eval()
    return loaded


def _from_object(obj: Any, path: Path, arch: str | None, kwargs: dict[str, Any]) -> LoadedModel:
    if isinstance(obj, nn.Module):  # only reachable with trust_model
        record = getattr(obj, "deploypipe_arch", None) or {}
        return LoadedModel(obj, record.get("name"), dict(record.get("kwargs", {})), _shape_from(record.get("kwargs")),
                           _last_linear_out(obj), {}, "pickled_module", path)
    if isinstance(obj, Mapping) and obj.get("format") == FORMAT:
        return _checkpoint(obj, path, arch, kwargs)
    if isinstance(obj, Mapping) and str(obj.get("format", "")).startswith("deploypipe.checkpoint/"):
        raise InputError(f"{str(path)!r} is a deploypipe checkpoint of format {obj['format']!r}, newer than "
                         f"this deploypipe reads ({FORMAT})", hint="upgrade deploypipe")
    sd = find_state_dict(obj)
    if sd is None:
        raise InputError(f"{str(path)!r} holds a {type(obj).__name__} that is neither a model nor a state_dict",
                         hint="save torch.save(model.state_dict(), path) or a deploypipe checkpoint")
    if not arch:
        raise InputError(f"{str(path)!r} is a plain state_dict that does not say its architecture",
                         hint="pass --arch with a zoo name (see `deploypipe list archs`) or package.module:factory")
    return _rebuild(sd, path, arch, kwargs, {}, "state_dict")


def _checkpoint(ckpt: Mapping[str, Any], path: Path, arch: str | None, kwargs: dict[str, Any]) -> LoadedModel:
    saved_arch = str(ckpt.get("arch") or "")
    sd = find_state_dict(ckpt.get("state_dict"))
    if sd is None:
        raise InputError(f"deploypipe checkpoint {str(path)!r} has no weights", hint="save it again")
    if arch is None and not arch_mod.is_zoo_name(saved_arch):
        raise InputError(f"{str(path)!r} names architecture {saved_arch!r}, which is not in the zoo and would be "
                         "imported as code", hint=f"pass --arch {saved_arch} to confirm that you want to import it")
    if arch is None or arch == saved_arch:
        saved = dict(ckpt.get("arch_kwargs") or {})
        clash = next((k for k, v in kwargs.items() if k in saved and saved[k] != v), None)
        if clash:  # the weights follow the checkpoint's shapes: the option would be ignored
            flag = "--" + clash.replace("_", "-")
            raise InputError(f"{str(path)!r} records {clash}={saved[clash]!r}, and {kwargs[clash]!r} was given "
                             f"({flag}), which contradicts it",
                             hint=f"leave {flag} out: a deploypipe checkpoint says its architecture")
        arch, kwargs = saved_arch, {**saved, **kwargs}
    metadata = dict(ckpt.get("metadata") or {})
    return _rebuild(sd, path, arch, kwargs, metadata, "deploypipe")


def _rebuild(sd: dict[str, torch.Tensor], path: Path, arch: str, kwargs: dict[str, Any],
             metadata: dict[str, Any], source: str) -> LoadedModel:
    model = arch_mod.build_model(arch, kwargs, sd)
    resized = load_weights(model, sd, f"{str(path)!r} ({arch})")
    if resized:
        log.info("rebuilt %d layer(s) at the widths saved in %s (a pruned model)", len(resized), path)
    record = getattr(model, "deploypipe_arch", None) or {}
    full_kwargs = dict(record.get("kwargs") or kwargs)
    shape = _shape_from(metadata) or _shape_from(full_kwargs)
    if resized and shape:
        _check_forward(model, shape, path)
    num_classes = full_kwargs.get("num_classes") or _last_linear_out(model)
    return LoadedModel(model, arch, full_kwargs, shape, num_classes, metadata, source, path, tuple(resized))


def _check_forward(model: nn.Module, shape: tuple[int, int, int], path: Path) -> None:
    """One forward pass of a resized model: widths that do not fit together fail here."""
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *shape))
    except RuntimeError as exc:
        raise InputError(f"the layer widths saved in {str(path)!r} do not fit together "
                         f"({str(exc).strip().splitlines()[0][:200]})",
                         hint="check that the file belongs to this architecture and its input size "
                         "(--input-shape)") from None


def _torchscript(path: Path) -> LoadedModel:
    try:
        model = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # torch raises RuntimeError subclasses with C++ messages
        raise InputError(f"cannot load TorchScript archive {str(path)!r} ({type(exc).__name__}: "
                         f"{str(exc).strip().splitlines()[0][:200]})", hint="save it again with torch.jit.save") from None
    return LoadedModel(model, None, {}, None, None, {}, "torchscript", path)


def _exported(path: Path) -> LoadedModel:
    try:
        program = torch.export.load(str(path))
    except Exception as exc:
        raise InputError(f"cannot load torch.export program {str(path)!r} ({type(exc).__name__}: "
                         f"{str(exc).strip().splitlines()[0][:200]})", hint="save it again with torch.export.save") from None
    shape, classes = _exported_io(program)
    return LoadedModel(program.module(), None, {}, shape, classes, {}, "torch.export", path)


def _exported_io(program: Any) -> tuple[tuple[int, int, int] | None, int | None]:
    """(C, H, W) of the single 4-D user input and the classes of a 2-D output, if static."""
    names = set(program.graph_signature.user_inputs)
    shapes = [n.meta.get("val").shape for n in program.graph.nodes
              if n.op == "placeholder" and n.name in names and n.meta.get("val") is not None]
    outputs = [n for n in program.graph.nodes if n.op == "output"]
    shape = None
    if len(shapes) == 1 and len(shapes[0]) == 4 and all(isinstance(d, int) for d in shapes[0][1:]):
        shape = tuple(int(d) for d in shapes[0][1:])
    classes = None
    vals = outputs[0].meta.get("val") if outputs else None
    if isinstance(vals, (list, tuple)) and len(vals) == 1 and getattr(vals[0], "dim", lambda: 0)() == 2:
        last = vals[0].shape[1]
        classes = int(last) if isinstance(last, int) else None
    return shape, classes  # type: ignore[return-value]


def _shape_from(record: Mapping[str, Any] | None) -> tuple[int, int, int] | None:
    """(C, H, W) from ``input_shape`` or from ``in_channels`` and ``input_size``."""
    if not record:
        return None
    shape = record.get("input_shape")
    if not shape and record.get("in_channels") and record.get("input_size"):
        size = record["input_size"]
        size = [size, size] if isinstance(size, int) else list(size)[-2:]
        shape = [record["in_channels"], *size]
    if isinstance(shape, (list, tuple)) and len(shape) == 3 and all(isinstance(d, int) for d in shape):
        return int(shape[0]), int(shape[1]), int(shape[2])
    return None


def _last_linear_out(model: nn.Module) -> int | None:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1].out_features if linears else None
