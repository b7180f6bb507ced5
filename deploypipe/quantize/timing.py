"""Quantizing the models a latency table and the measure-and-correct loop time.

A target that runs int8 (or fp16) runs the quantized graph, so that is what must be timed:
every sub-graph of the table and every candidate pruned model is quantized the way the
build's model will be (same scheme, per-channel weights, the same layers kept in fp32)
before it is timed. Latency does not depend on the scales, only on which kernels run at
which sizes, so calibration here is cheap: ``batches`` seeded batches of standard-normal
inputs, at the model's own (static) batch. Models already quantized pass through, and a
model timed again (the dense model of every pair) is quantized once.
"""
from __future__ import annotations

import hashlib
import tempfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import graph

if TYPE_CHECKING:
    import onnx

CACHE = 16  # quantized models kept (a loop times its dense model beside every candidate)


@dataclass
class TimingQuantizer:
    """``model -> quantized model`` for timing (see the module docstring)."""

    precision: str
    scheme: str = "cpu"
    keep: tuple[str, ...] = ()  # layer names (aliases resolved on the whole model beforehand)
    batches: int = 2
    seed: int = 0
    _cache: OrderedDict = field(default_factory=OrderedDict, repr=False)

    def __call__(self, model: "onnx.ModelProto") -> "onnx.ModelProto":
        if graph.is_quantized(model):
            return model
        key = hashlib.sha256(model.SerializeToString()).hexdigest()
        if key not in self._cache:
            self._cache[key] = self._convert(graph.named(model))
            while len(self._cache) > CACHE:
                self._cache.popitem(last=False)
        self._cache.move_to_end(key)
        return self._cache[key]

    def _convert(self, model: "onnx.ModelProto") -> "onnx.ModelProto":
        keep = [n for n in self.keep if n in set(graph.layers(model))]
        if self.precision == "fp16":
            from .half import convert_fp16

            return convert_fp16(model, keep=keep)
        from ..backends.feeds import random_feeds
        from ..backends.trt_options import onnx_inputs
        from .int8 import prepare, quantize_int8

        with tempfile.TemporaryDirectory(prefix="deploypipe-qtime-") as tmp:
            prepared = prepare(model, Path(tmp))
        specs = onnx_inputs(prepared)
        batch = next((s.shape[0] for s in specs if s.shape and isinstance(s.shape[0], int)), 1)
        feeds = [random_feeds(specs, batch, seed=self.seed + k) for k in range(self.batches)]
        return quantize_int8(prepared, feeds, keep=keep, scheme=self.scheme)
