"""Measure a target's preferred channel multiple (the profile's ``round_to``).

Kernels that block channels (ONNX Runtime's NCHWc layout, tensor-core tiles) pad a width
up to the next multiple of their block, so latency is a staircase in the width: cutting a
channel below a multiple saves nothing until the whole block is gone. We time one 3x3
Conv (``w`` in and out channels) at every width in a range and, for each candidate
multiple ``m``, ask what fraction of a block's cost a misaligned width still pays:

    paid(m) = median over w not a multiple of m of
              (T(ceil_m(w)) - T(w)) / (T(ceil_m(w)) - T(floor_m(w)))  -> saved fraction

On a staircase of step ``b``, every ``m`` dividing ``b`` saves ~0 at misaligned widths; a
multiple of ``b`` larger than ``b`` saves about half; a smooth (unblocked) kernel saves
about half for every ``m``. The preferred multiple is the largest ``m`` that saves at most
``threshold`` (default 0.25) of a block at misaligned widths.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..targets import TargetProfile
from .timer import TargetTimer, Timer

CANDIDATES = (2, 4, 8, 16, 32)


@dataclass(frozen=True)
class Alignment:
    """Latency per width and the fraction of a block each candidate multiple saves."""

    widths: tuple[int, ...]
    ms: tuple[float, ...]
    saved: dict[int, float] = field(default_factory=dict)
    multiple: int = 1
    threshold: float = 0.25

    def to_dict(self) -> dict:
        return {"widths": list(self.widths), "ms": list(self.ms), "saved_fraction": self.saved,
                "multiple": self.multiple, "threshold": self.threshold,
                "method": "one 3x3 Conv with w input and w output channels timed at every width; "
                          "saved_fraction[m] = median share of a block of m channels that a width "
                          "below a multiple of m saves; the multiple is the largest m saving at most "
                          "the threshold"}


def conv_model(width: int, size: int, batch: int, seed: int = 0) -> onnx.ModelProto:
    """One 3x3 Conv + ReLU with ``width`` channels in and out at ``size`` x ``size``."""
    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.standard_normal((width, width, 3, 3)).astype(np.float32) * 0.1, "w")
    b = numpy_helper.from_array(np.zeros(width, dtype=np.float32), "b")
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"])]
    graph = helper.make_graph(nodes, f"conv{width}",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, width, size, size])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, width, size, size])],
                              initializer=[w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what every onnxruntime since 1.10 reads
    return model


def probe_multiple(target: TargetProfile, *, widths: Sequence[int] = tuple(range(24, 89)), size: int = 14,
                   timer: Timer | None = None, threshold: float = 0.25) -> Alignment:
    """Time the Conv at every width on ``target`` and pick the preferred multiple."""
    timer = timer or TargetTimer(target)
    ms = timer.time([conv_model(w, size, target.batch) for w in widths])
    return analyse_staircase(widths, ms, threshold=threshold)


def analyse_staircase(widths: Sequence[int], ms: Sequence[float], *, threshold: float = 0.25) -> Alignment:
    """The saved fraction per candidate multiple, and the largest multiple saving little."""
    t = dict(zip(widths, ms))
    saved = {m: _saved(t, m) for m in CANDIDATES}
    ok = [m for m, s in saved.items() if s is not None and s <= threshold]
    return Alignment(tuple(widths), tuple(ms), {m: s for m, s in saved.items() if s is not None},
                     max(ok, default=1), threshold)


def _saved(t: dict[int, float], m: int) -> float | None:
    shares = []
    for w in t:
        lo, hi = m * (w // m), m * math.ceil(w / m)
        if w % m and lo in t and hi in t and t[hi] > t[lo]:
            shares.append((t[hi] - t[w]) / (t[hi] - t[lo]))
    return statistics.median(shares) if len(shares) >= 3 else None
