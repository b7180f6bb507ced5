"""Where latency tables are cached, and the keys that say when a cached one is valid.

A table is valid for one architecture (not its weights: dense fp32 kernels take the same
time whatever the values, so a re-trained model reuses its table), one target profile
(the fields that change a measurement) and one machine (the hardware fingerprint's key).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import onnx
from onnx import numpy_helper

from ..targets import TargetProfile

# Profile fields that do not change what a measurement means.
_NOT_TIMING = ("name", "description", "source", "tolerances", "round_to")


def cache_root() -> Path:
    """``$DEPLOYPIPE_CACHE/lut``, else ``~/.cache/deploypipe/lut``."""
    base = os.environ.get("DEPLOYPIPE_CACHE")
    root = Path(base) if base else Path.home() / ".cache" / "deploypipe"
    return root / "lut"


def architecture_hash(model: onnx.ModelProto) -> str:
    """SHA-256 of the graph without weight values: nodes, attributes, shapes and dtypes,
    and the values of integer initializers (shape data such as Reshape targets)."""
    h = hashlib.sha256()
    g = model.graph
    for node in g.node:
        h.update(repr((node.op_type, node.domain, list(node.input), list(node.output))).encode())
        for a in node.attribute:
            h.update(a.SerializeToString())
    for vi in list(g.input) + list(g.output):
        h.update(vi.SerializeToString())
    for t in g.initializer:
        h.update(repr((t.name, list(t.dims), t.data_type)).encode())
        if t.data_type in (onnx.TensorProto.INT64, onnx.TensorProto.INT32):
            h.update(numpy_helper.to_array(t).tobytes())
    h.update(repr([(o.domain, o.version) for o in model.opset_import]).encode())
    return h.hexdigest()


def target_key(target: TargetProfile) -> str:
    """12 hex digits over the profile fields that change a measurement."""
    d = {k: v for k, v in target.to_dict(verdicts=False).items() if k not in _NOT_TIMING}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def table_path(arch_hash: str, target: TargetProfile, fingerprint_key: str, step: int,
               root: Path | None = None) -> Path:
    label = re.sub(r"[^A-Za-z0-9_.-]", "_", target.name)[:40]
    name = f"{arch_hash[:16]}-{label}-{target_key(target)}-{fingerprint_key}-step{step}.json"
    return (root or cache_root()) / name
