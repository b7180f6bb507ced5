"""The user's own code named on the command line: ``package.module:attr`` or
``path/to/file.py:attr`` (``--arch``, ``--dataset py:...``).

A module name is imported as ``python -m`` would (the current folder importable); a file is
loaded under a private module name with its own folder importable, so it can import the
files beside it. Every failure is one sentence naming the spec and the fix.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import InputError


def load_callable(spec: str, *, option: str, example: str) -> Callable[..., Any]:
    """The callable ``spec`` names; ``option`` and ``example`` word the errors (``--arch``,
    ``mynets.resnet:build``)."""
    where, _, attr = spec.rpartition(":")
    if not where or not attr:  # `--dataset py:` takes its spec without a space
        said, eg = ((f"{option}{spec}", f"{option}{example}") if option.endswith(":")
                    else (f"{option} {spec}", f"{option} {example}"))
        raise InputError(f"{said!r} is not of the form package.module:name or file.py:name", hint=f"e.g. {eg}")
    obj: Any = _load_file(where, spec, option) if _is_file(where) else _import(where, spec, option)
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise InputError(f"{where} has no attribute {attr!r} (from {option} {spec})",
                             hint="check the name after the last colon")
        obj = getattr(obj, part)
    if not callable(obj):
        raise InputError(f"{option} {spec} names a {type(obj).__name__}, which cannot be called",
                         hint="point it at a function or class")
    return obj


def _is_file(where: str) -> bool:
    return where.endswith(".py") or os.sep in where or "/" in where


def _import(module_name: str, spec: str, option: str) -> Any:
    try:
        with _on_path(os.getcwd()):
            return importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(f"cannot import module {module_name!r} named by {option} {spec} ({exc})",
                         hint="install it or run from the folder that holds it") from None


def _load_file(where: str, spec: str, option: str) -> Any:
    path = Path(where).expanduser().resolve()
    if not path.is_file():
        raise InputError(f"{option} {spec}: the file {where} does not exist",
                         hint="give the path of a .py file, then a colon and the name in it")
    name = "deploypipe_user_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
    if name in sys.modules:
        return sys.modules[name]
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise InputError(f"{option} {spec}: {where} cannot be loaded as Python", hint="give a .py file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        with _on_path(str(path.parent)):
            module_spec.loader.exec_module(module)
    except Exception as exc:  # the user's module failed at import: say where, keep it short
        del sys.modules[name]
        raise InputError(f"{option} {spec}: running {where} failed ({type(exc).__name__}: {exc})",
                         hint="run `python " + where + "` to see the full error") from None
    return module


@contextlib.contextmanager
def _on_path(folder: str) -> Iterator[None]:
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        yield
    finally:
        if added and folder in sys.path:
            sys.path.remove(folder)
