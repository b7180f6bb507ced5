"""Checkpoints that load without running code: ``save_checkpoint`` writes a weights-only
dict (format, arch, arch kwargs, widths, state_dict, metadata); ``load_model`` reads it
and every other common PyTorch model file, refusing pickled code unless trusted."""
from __future__ import annotations

from .load import LoadedModel, load_model
from .save import FORMAT, layer_widths, save_checkpoint

__all__ = ["FORMAT", "LoadedModel", "layer_widths", "load_model", "save_checkpoint"]
