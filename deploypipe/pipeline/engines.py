"""Engines handed over with a build: the TensorRT engines that were timed, as files.

A TensorRT target's profile step builds (or finds in the cache) a serialized engine for
``dense.onnx`` and ``pruned.onnx``; those are the artefacts a deployment loads, so the run
folder gets them as ``dense.plan`` and ``pruned.plan`` with ``*.plan.json`` beside each:
the build options (precision, strong typing, optimisation profiles, workspace), the
TensorRT version and the machine it was built on. An engine runs only on the GPU model,
driver and TensorRT version it was built with; ``deploypipe profile pruned.plan`` times it
again there.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..utils.files import write_bytes, write_json


def hand_over_engine(profile: Any, run_dir: Path, stem: str) -> list[str]:
    """Copy the engine ``profile`` ran (if it was a serialized engine) to ``STEM.plan`` in
    ``run_dir`` with its build record as ``STEM.plan.json``; the files written."""
    source = getattr(profile, "engine_file", None)
    if not source:
        return []
    source = Path(source)
    plan = run_dir / f"{stem}.plan"
    write_bytes(plan, source.read_bytes())
    write_json(plan.with_name(f"{stem}.plan.json"), {
        "engine": plan.name, "onnx": f"{stem}.onnx", "backend": profile.backend,
        "target": profile.target.to_dict(), **_build_record(source),
        "note": "a TensorRT engine runs only on the GPU model, driver and TensorRT version "
                "it was built with"})
    return [plan.name, f"{plan.name}.json"]


def _build_record(engine: Path) -> dict[str, Any]:
    """What the engine cache noted beside the engine: its key, build options, machine."""
    try:
        record = json.loads(engine.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return {}
    return {k: record[k] for k in ("key", "options", "fingerprint") if k in record}
