"""The one naming rule of the JSON files (README, Report): trtexec's camelCase for latency
records and per-layer profiles, snake_case for every other key."""
from __future__ import annotations

import json
import re

from deploypipe.measure.stats import LatencyStats

TRTEXEC = {"averageMs", "medianMs", "minMs", "maxMs", "percentile90Ms", "percentile95Ms", "percentile99Ms", "stdMs",
           "timeMs", "inputShapes"}


def _keys(obj, path=""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield k, path
            yield from _keys(v, f"{path}/{k}")
    elif isinstance(obj, list):
        for v in obj:
            yield from _keys(v, f"{path}[]")


def _breaking(obj) -> list[tuple[str, str]]:
    return [(k, p) for k, p in _keys(obj) if not re.fullmatch(r"[a-z0-9_]+", k) and k not in TRTEXEC]


def test_report_keys_are_snake_case_but_trtexecs_layer_fields(built):
    report = json.loads((built / "report.json").read_text())
    assert _breaking(report) == []
    layers = report["layers"]["dense"]
    assert layers and {"name", "timeMs", "medianMs"} <= set(layers[0])  # the profile keeps trtexec's names


def test_latency_records_use_trtexecs_names_and_the_check_catches_a_stray_key():
    record = LatencyStats.from_samples([1.0, 2.0, 3.0], batch=1).to_dict()
    assert _breaking(record) == [] and "medianMs" in record
    assert _breaking({"dense": {"macsBefore": 1}}) == [("macsBefore", "/dense")]
