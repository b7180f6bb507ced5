"""Measurement: latency statistics, timing and the machine's fingerprint.

Profiling a model on a target, which needs the backends, lives one level up in
:mod:`deploypipe.profiling`: the backends use what is defined here, so this package does
not import them.
"""
from __future__ import annotations

from .fingerprint import Fingerprint, hardware_fingerprint
from .stats import LatencyStats
from .timing import time_callable

__all__ = ["Fingerprint", "LatencyStats", "hardware_fingerprint", "time_callable"]
