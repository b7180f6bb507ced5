"""``torch.load`` that never runs code from the file unless the user trusts it.

With ``weights_only=True`` torch's unpickler admits tensors, containers and primitives
only; anything else (a pickled ``nn.Module``, a class, a function) is refused. We turn the
refusal into one sentence that says why and how to accept the file (``--trust-model``).
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError

_GLOBAL = re.compile(r"unsupported global:? (?:GLOBAL )?([\w.]+)", re.IGNORECASE)  # torch words it two ways
_DETAIL = re.compile(r"WeightsUnpickler error:\s*([^\n]+)")


def torch_load(path: Path, *, trust_model: bool = False) -> Any:
    """The object ``torch.save`` wrote to ``path``, on the CPU; weights-only unless trusted."""
    if _is_raw_pickle(path):
        if not trust_model:
            raise InputError(f"{str(path)!r} is a plain Python pickle, not a PyTorch checkpoint, and loading it "
                             "could run code from the file", hint="pass --trust-model only if you trust its "
                             "source, or save it with torch.save(model.state_dict(), path)")
        with open(path, "rb") as f:
            return pickle.load(f)  # noqa: S301 - the user said they trust this file
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_model)
    except pickle.UnpicklingError as exc:
        raise _refusal(path, str(exc), trust_model) from None
    except (AttributeError, ModuleNotFoundError, ImportError) as exc:  # only when trusted
        raise InputError(f"{str(path)!r} is a pickled Python object whose code is not importable here ({exc})",
                         hint="install the package that defines it, or save a state_dict and pass --arch") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise InputError(f"{str(path)!r} is truncated, corrupt or not a PyTorch file "
                         f"({type(exc).__name__}: {_first_line(exc)})", hint="save or copy the model again") from None


def _is_raw_pickle(path: Path) -> bool:
    """A bare ``pickle.dump`` (protocol 2+): not a torch zip archive nor torch's legacy
    format, whose first pickle is a magic number (a long)."""
    with open(path, "rb") as f:
        head = f.read(16)
    if len(head) < 3 or head[0] != 0x80 or head[1] < 2:
        return False
    return b"\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19" not in head  # legacy torch magic number pickle


def _refusal(path: Path, message: str, trusted: bool) -> InputError:
    found = _GLOBAL.search(message)
    if found and not trusted:
        return InputError(
            f"{str(path)!r} is a pickled Python object (it needs {found.group(1)}), and loading it would run "
            "code from the file", hint="pass --trust-model only if you trust its source, or save a "
            "state_dict (torch.save(model.state_dict(), path)) and load it with --arch")
    detail = _DETAIL.search(message)
    reason = detail.group(1) if detail else _first_line(message)
    reason = f" ({reason.strip().rstrip('.')})" if reason.strip() else ""
    return InputError(f"{str(path)!r} is corrupt or not a PyTorch file{reason}",
                      hint="save or copy the model again")


def _first_line(exc: object) -> str:
    text = str(exc).strip()
    return (text.splitlines() or [""])[0][:200]
