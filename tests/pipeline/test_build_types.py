"""The build's typed values without a build: a config from Python with defaults for all but
the model, and a report whose ``to_dict()`` is report.json (keys in order, absent parts left out)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from deploypipe.pipeline import BuildConfig, BuildReport, ModelSource
from deploypipe.report.schema import (GroupRow, LatencyOutcome, LatencyStats, LayerTimes, MethodSummary,
                                      ModelColumn, StageTime, TargetSummary, Verification)
from deploypipe.pipeline.build_report import summary

KEYS = ["deploypipe_version", "created", "command", "target", "method", "budget", "dataset", "dense", "pruned",
        "groups", "rounds", "verification", "layers", "stages", "artifacts"]


def _report(**changes) -> BuildReport:
    stats = LatencyStats(median=2.0, p90=2.5, p99=3.0, mean=2.1, cv=0.1, throughput=500.0, batch=1, iterations=5)
    report = BuildReport(
        deploypipe_version="0", created="now", command="deploypipe build m.onnx",
        target=TargetSummary("cpu", "onnxruntime", ("CPUExecutionProvider",), 1, "fp32", "wall", {"cpu": "x"}),
        method=MethodSummary("oneshot", "l1", {}, "uniform", 1, False), budget={"kind": "ratio", "value": 0.5},
        dataset=None, dense=ModelColumn(1000, 100, None, stats), pruned=ModelColumn(400, 40, None, stats),
        groups=(GroupRow(0, 8, 4, False, None),), rounds=(), verification=Verification(None, 1e-7, True),
        layers=LayerTimes((), ()), stages=(StageTime("prune", 0.5), StageTime("analyse", 0.0, reused=True)),
        artifacts=("dense.onnx", "pruned.onnx", "report.json", "report.html"))
    return dataclasses.replace(report, **changes)


def test_a_config_needs_only_the_model():
    config = BuildConfig("zoo:test_resnet_cifar")
    assert config.model == ModelSource("zoo:test_resnet_cifar") and config.model.from_zoo
    assert config.out_dir == Path("deploypipe-run") and config.train.epochs == 5 and config.budget.kind == "macs"
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.seed = 1  # type: ignore[misc]


def test_to_dict_is_report_json_with_absent_parts_left_out():
    d = _report().to_dict()
    assert list(d) == KEYS
    assert "losses" not in d["method"] and "quantized" not in d["verification"] and "quantized" not in d["layers"]
    assert "size_bytes" not in d["dense"] and d["stages"] == [{"name": "prune", "seconds": 0.5},
                                                              {"name": "analyse", "seconds": 0.0, "reused": True}]
    assert d["target"]["providers"] == ["CPUExecutionProvider"] and d["dense"]["latency_ms"]["iterations"] == 5
    assert _report()["pruned"]["macs"] == 400  # the read-only transition for callers that index it


def test_a_latency_outcome_sits_at_the_top_level():
    outcome = LatencyOutcome({"path": "latency_table.json"}, ({"round": 1},), {"sentence": "met", "met": True})
    d = _report(latency=outcome).to_dict()
    assert list(d) == [*KEYS, "latency_table", "latency_loop", "latency_result"]
    assert d["latency_loop"] == [{"round": 1}] and "latency" not in d


def test_the_summary_reads_the_typed_report():
    text = summary(_report(latency=LatencyOutcome({}, (), {"sentence": "latency budget met"})), "run")
    assert "2.50x fewer" in text and "latency budget met" in text and "oracle 1e-07" in text
    assert text.endswith("artifacts in run: dense.onnx, pruned.onnx, report.json, report.html")


def test_a_plain_removal_left_untrained_that_lost_accuracy_is_told_what_helps():
    lost = {"dense": ModelColumn(1000, 100, 0.95, None), "pruned": ModelColumn(400, 40, 0.40, None)}
    text = summary(_report(**lost), "run")
    assert "not fine-tuned: accuracy fell 55.0 pt" in text and "--method cpli" in text
    for changes in ({"stages": (StageTime("prune", 0.5), StageTime("finetune", 3.0))},  # it was fine-tuned
                    {"method": MethodSummary("cpli", "l1", {}, "uniform", 1, False)},  # it refits already
                    {"pruned": ModelColumn(400, 40, 0.90, None)}):  # it lost little
        assert "not fine-tuned" not in summary(_report(**{**lost, **changes}), "run")
