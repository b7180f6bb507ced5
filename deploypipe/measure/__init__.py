"""Measurement: latency statistics, timing, the machine's fingerprint and ONNX profiling.

``profile_onnx`` and ``ProfileResult`` load lazily because they pull in the backends,
which themselves use the statistics defined here.
"""
from __future__ import annotations

import importlib

from .fingerprint import Fingerprint, hardware_fingerprint
from .stats import LatencyStats
from .timing import time_callable

_LAZY = {"profile_onnx": ".profile", "ProfileResult": ".profile"}

__all__ = ["Fingerprint", "LatencyStats", "hardware_fingerprint", "time_callable", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
