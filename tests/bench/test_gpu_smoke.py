"""tools/gpu_smoke.py: the GPU run's commands are formed here, where no GPU runs them, so the
device minutes are not spent finding a typo; and its verdicts read a build's report right."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[2] / "tools" / "gpu_smoke.py"


@pytest.fixture(scope="module")
def smoke():
    spec = importlib.util.spec_from_file_location("gpu_smoke", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_smoke"] = module  # its dataclasses and argparse look the module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("gpu_smoke", None)


def test_the_gpu_pt_case_builds_the_checkpoint_on_the_gpu_profile_at_batch_32(smoke, tmp_path, monkeypatch):
    ran = []
    monkeypatch.setattr(smoke, "_build", lambda name, extra, run, timeout: ran.append((name, extra)) or {})
    args = smoke.parse(["--out", str(tmp_path), "--build-cases", "pt", "--models", "resnet18", "--size", "32"])
    seen = []
    smoke.builds(args, tmp_path / "work", lambda rows: seen.append(len(rows)))
    [(name, extra)] = ran
    assert seen == [1]  # the JSON is written after each build
    assert name == "resnet18-32px-b32-ratio-0.55"
    checkpoint, flags = Path(extra[0]), dict(zip(extra[1::2], extra[2::2]))
    assert checkpoint.is_file() and checkpoint.suffix == ".pt"
    assert flags["--shapes"] == "input:32x3x32x32" and flags["--latency-ratio"] == "0.55"
    assert flags["--lut-step"] == "64"
    from deploypipe.targets import load_target

    target = load_target(flags["--target"])
    assert (target.auto, target.device, target.precision, target.batch, target.iterations) == (
        True, "cuda", "fp16", 32, 100)


def test_a_verdict_reads_the_latency_result_macs_and_stages(smoke):
    report = {"target": "gpu-b32", "dense": {"macs": 4.0e9, "accuracy": None}, "pruned": {"macs": 1.6e9},
              "latency_result": {"final_pruned_ms": 1.30, "final_budget_ms": 1.33, "final_dense_ms": 2.42},
              "latency_loop": [{}, {}], "stages": [{"name": "latency", "seconds": 61.5}],
              "verification": {"passed": True}}
    verdict = smoke._verdict(report)
    assert verdict["macs_reduction"] == pytest.approx(2.5)
    assert verdict["speedup"] == pytest.approx(2.42 / 1.30)
    assert verdict["final_to_budget"] == pytest.approx(1.30 / 1.33) and verdict["final_within_5pct_under"]
    assert verdict["rounds"] == 2 and verdict["stage_seconds"] == {"latency": 61.5}
    over = smoke._verdict({**report, "latency_result": {**report["latency_result"], "final_pruned_ms": 1.40}})
    assert not over["final_within_5pct_under"] and "outside" in over["summary"]
    bare = smoke._verdict({"dense": {}, "pruned": {}})  # a build without a latency budget
    assert bare["speedup"] is None and bare["macs_reduction"] is None
    assert bare["summary"] == "no final latency check in the report"
