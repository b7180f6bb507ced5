"""Measure a target's preferred channel multiple (the profile's ``round_to``).

Kernels that block channels (ONNX Runtime's NCHWc layout, tensor-core tiles) run widths
that are a multiple of their block fastest; other widths pad up or take a slower path, so
latency against width is a saw-tooth or a staircase, not a line. We time one 3x3 Conv
(``w`` in and out channels) at every width in a range and ask, for each candidate multiple
``m``: at how many widths is rounding *up* to the next multiple of ``m`` no slower (within
1%) than the width itself? On a staircase or saw-tooth of block ``b`` that holds for
every ``m`` dividing ``b`` and fails for larger multiples (a width just above ``b`` would
round up a whole block); on a smooth kernel it fails for every ``m``. The preferred
multiple is the largest ``m`` for which it holds at 90% of the widths (1 if none).

``penalty[m]`` is the median over multiples ``k*m`` of ``min(T(km - 1), T(km + 1)) / T(km)``:
how much slower a width one channel off a multiple runs (above 1: slower than the wider
aligned width, the trap that makes lightly pruned models slower than dense).
"""
from __future__ import annotations

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
    """Latency per width, and per candidate multiple where rounding up costs nothing."""

    widths: tuple[int, ...]
    ms: tuple[float, ...]
    round_up_free: dict[int, float] = field(default_factory=dict)  # share of widths
    penalty: dict[int, float] = field(default_factory=dict)
    multiple: int = 1

    def to_dict(self) -> dict:
        return {"widths": list(self.widths), "ms": list(self.ms), "round_up_free": self.round_up_free,
                "penalty_one_channel_off": self.penalty, "multiple": self.multiple,
                "method": "one 3x3 Conv with w input and w output channels timed at every width; "
                          "round_up_free[m] = share of widths where the next multiple of m is no slower "
                          "(1%); the multiple is the largest m where that share is at least 90%"}


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
                   timer: Timer | None = None) -> Alignment:
    """Time the Conv at every width on ``target`` and pick the preferred multiple."""
    timer = timer or TargetTimer(target)
    ms = timer.time([conv_model(w, size, target.batch) for w in widths])
    return analyse_widths(widths, ms)


def analyse_widths(widths: Sequence[int], ms: Sequence[float], *, need: float = 0.9,
                   slack: float = 0.01) -> Alignment:
    """Per candidate multiple, the share of widths where rounding up is free; the multiple."""
    t = dict(zip(widths, ms))
    free = {m: s for m in CANDIDATES if (s := _round_up_free(t, m, slack)) is not None}
    penalty = {m: p for m in CANDIDATES if (p := _penalty(t, m)) is not None}
    return Alignment(tuple(widths), tuple(ms), free, penalty,
                     max((m for m, s in free.items() if s >= need), default=1))


def _round_up_free(t: dict[int, float], m: int, slack: float) -> float | None:
    ups = [t[-(-w // m) * m] <= t[w] * (1 + slack) for w in t if w % m and -(-w // m) * m in t]
    return sum(ups) / len(ups) if len(ups) >= 3 else None


def _penalty(t: dict[int, float], m: int) -> float | None:
    ratios = [min(t[w - 1], t[w + 1]) / t[w] for w in t if w % m == 0 and w - 1 in t and w + 1 in t]
    return statistics.median(ratios) if ratios else None
