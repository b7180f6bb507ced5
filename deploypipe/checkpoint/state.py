"""State dicts: find one inside a loaded object, load it into a model with a readable
report of what differs, and refuse NaN or infinite weights."""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from ..errors import InputError
from ..models.resize import resize_to_state_dict

# Keys under which training scripts commonly nest the weights.
_NESTED = ("state_dict", "model_state_dict", "model", "net", "weights")
_SHOW = 3  # how many differing keys a message names


def find_state_dict(obj: Any) -> dict[str, torch.Tensor] | None:
    """``obj`` itself if it maps names to tensors, or such a mapping under a common key;
    a ``module.`` prefix (DataParallel) is removed."""
    if _is_state_dict(obj):
        return _strip_prefix(dict(obj))
    if isinstance(obj, Mapping):
        for key in _NESTED:
            if _is_state_dict(obj.get(key)):
                return _strip_prefix(dict(obj[key]))
    return None


def _is_state_dict(obj: Any) -> bool:
    return (isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(k, str) for k in obj)
            and all(isinstance(v, torch.Tensor) for v in obj.values()))


def _strip_prefix(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if all(k.startswith("module.") for k in sd):
        return {k[len("module."):]: v for k, v in sd.items()}
    return sd


def load_weights(model: nn.Module, sd: Mapping[str, torch.Tensor], what: str) -> list[str]:
    """Resize layers to the saved widths, then load ``sd`` strictly (a missing
    ``num_batches_tracked`` is tolerated); returns the resized layer names."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in expected]
    if missing or unexpected:
        raise InputError(f"{what} does not match its architecture: {_key_report(missing, unexpected)}",
                         hint="check --arch and its arguments (e.g. --num-classes, --in-channels)")
    resized = resize_to_state_dict(model, sd)
    expected = model.state_dict()
    differ = [f"{k} saved {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
              for k, v in sd.items() if tuple(v.shape) != tuple(expected[k].shape)]
    if differ:
        raise InputError(f"{what} does not match its architecture: {len(differ)} tensor shape(s) differ "
                         f"({'; '.join(differ[:_SHOW])}{'; ...' if len(differ) > _SHOW else ''})",
                         hint="check --arch and its arguments")
    model.load_state_dict(sd, strict=False)
    return resized


def _key_report(missing: list[str], unexpected: list[str]) -> str:
    parts = []
    if missing:
        parts.append(f"{len(missing)} key(s) missing from the file ({_few(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s) in the file ({_few(unexpected)})")
    return " and ".join(parts)


def _few(keys: list[str]) -> str:
    return ", ".join(keys[:_SHOW]) + (", ..." if len(keys) > _SHOW else "")


def check_finite(model: nn.Module, what: str) -> None:
    """Refuse a model whose parameters or buffers hold NaN or infinite values, naming the
    first such tensor and how many of its values are bad."""
    bad = [(name, int((~torch.isfinite(t)).sum())) for name, t in model.state_dict().items()
           if torch.is_tensor(t) and t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        name, count = bad[0]
        more = f" (and {len(bad) - 1} more tensor{'s' if len(bad) > 2 else ''})" if len(bad) > 1 else ""
        raise InputError(f"{what} has {count} NaN or infinite value{'s' if count > 1 else ''} in {name!r}{more}",
                         hint="the training that wrote it diverged; load an earlier or a retrained checkpoint")
