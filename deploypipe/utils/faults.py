"""Fault injection for the tests that prove runs survive a kill.

``DEPLOYPIPE_FAULT=kill:<point>`` makes the process SIGKILL itself when it reaches that
point: a stage boundary (``train:start``, ``prune:end``; ``kill:train`` means its start) or
an atomic write about to rename its temporary file into place (``write:dense.onnx``; the
pattern may use ``*``, as in ``write:*-step8.json``). Unset, every call is a dictionary
lookup and nothing else.
"""
from __future__ import annotations

import fnmatch
import os
import signal

FAULT_ENV = "DEPLOYPIPE_FAULT"


def fault(point: str) -> None:
    """SIGKILL this process if ``$DEPLOYPIPE_FAULT`` names ``point``."""
    spec = os.environ.get(FAULT_ENV, "")
    if not spec.startswith("kill:"):
        return
    pattern = spec[len("kill:"):]
    if ":" not in pattern:
        pattern += ":start"
    if fnmatch.fnmatchcase(point, pattern):
        os.kill(os.getpid(), signal.SIGKILL)
