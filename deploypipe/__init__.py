"""deploypipe: make a trained CNN smaller and faster on the hardware it will run on.

The public API is re-exported lazily so that ``import deploypipe`` stays cheap and works
without torch's heavy optional parts, tensorrt or a GPU.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

from .errors import DeploypipeError, InternalError  # noqa: E402

# name -> module that defines it; resolved on first attribute access.
_LAZY = {
    "build": "deploypipe.api",
    "BuildResult": "deploypipe.api",
    "create_model": "deploypipe.models",
    "list_models": "deploypipe.models",
    "load_dataset": "deploypipe.data",
    "list_datasets": "deploypipe.data",
    "load_model": "deploypipe.checkpoint",
    "save_checkpoint": "deploypipe.checkpoint",
    "export_onnx": "deploypipe.export",
    "analyse": "deploypipe.graph",
    "shrink": "deploypipe.graph",
    "load_target": "deploypipe.targets",
}

__all__ = ["__version__", "DeploypipeError", "InternalError", "prune", *_LAZY]


def __getattr__(name: str):
    if name == "prune":  # the subpackage, callable as deploypipe.prune(model, example_inputs, ...)
        return importlib.import_module("deploypipe.prune")
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'deploypipe' has no attribute {name!r}")
