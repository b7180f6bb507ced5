"""Runs resume: a build killed with SIGKILL at any stage and started again finishes with
the same result and no corrupt file; a re-run reuses finished stages."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import torch

ARGS = ["build", "zoo:test_resnet_cifar", "--dataset", "digits", "--limit", "200", "--pretrain-epochs", "1",
        "--epochs", "1", "--profile-iterations", "3", "--importance", "taylor"]
STAGES = ["data", "load", "train", "export_dense", "prune", "finetune", "export_pruned", "profile"]
FAST = {("prune", "end"), ("finetune", "start")}
CASES = [(s, "start") for s in STAGES] + [(s, "end") for s in ("train", "export_dense", "prune", "finetune")]


def build(out: Path, fault: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    env.pop("DEPLOYPIPE_FAULT", None)
    if fault:
        env["DEPLOYPIPE_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", "deploypipe", *ARGS, "-o", str(out)], env=env,
                          capture_output=True, text=True, timeout=600)


def outcome(out: Path) -> dict:
    report = json.loads((out / "report.json").read_text())
    return {"dense": {k: report["dense"][k] for k in ("macs", "params", "accuracy")},
            "pruned": {k: report["pruned"][k] for k in ("macs", "params", "accuracy")},
            "widths": [g["width_after"] for g in report["groups"]],
            "rounds": [{k: r[k] for k in ("channels_removed", "macs")} for r in report["rounds"]]}


def check_files(out: Path) -> None:
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")], "a temporary file was left behind"
    for p in out.glob("*.onnx"):
        onnx.checker.check_model(onnx.load(str(p)))
    for p in out.glob("*.pt"):
        assert torch.load(p, weights_only=True)["format"].startswith("deploypipe.checkpoint")
    json.loads((out / "manifest.json").read_text())


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "run"
    done = build(out)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def _case(stage, when):
    marks = [] if (stage, when) in FAST else [pytest.mark.slow]
    return pytest.param(stage, when, marks=marks, id=f"{stage}-{when}")


@pytest.mark.parametrize("stage,when", [_case(*c) for c in CASES])
def test_killed_run_resumes_to_the_same_result(stage, when, reference, tmp_path):
    out = tmp_path / "run"
    killed = build(out, f"kill:{stage}:{when}")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not (out / "report.json").exists()
    resumed = build(out)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert outcome(out) == outcome(reference)
    check_files(out)
    # a stage killed at its start or at its end (files written, manifest not yet) runs again
    recorded = ["train", "export_dense", "prune", "finetune", "export_pruned"]
    finished_before = recorded.index(stage) if stage in recorded else (5 if stage == "profile" else 0)
    assert resumed.stderr.count("reusing stage") == finished_before


def test_rerun_reuses_every_finished_stage(reference, tmp_path):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(reference, out)
    again = build(out)
    assert again.returncode == 0
    for stage in ("train", "export_dense", "prune", "finetune", "export_pruned"):
        assert f"reusing stage {stage}" in again.stderr
    assert outcome(out) == outcome(reference)


def test_a_damaged_artifact_is_rebuilt_not_trusted(reference, tmp_path):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(reference, out)
    (out / "pruned_raw.pt").write_bytes(b"garbage")
    again = build(out)
    assert again.returncode == 0 and "lost pruned_raw.pt" in again.stderr
    assert outcome(out) == outcome(reference)


def test_the_speed_margin_re_runs_no_stage(tmp_path):
    """same_speed_margin only words the final speed verdict: changing it keeps every stage's key."""
    import dataclasses

    from deploypipe.pipeline.build import stage_keys
    from deploypipe.pipeline.config import BuildConfig, DataOptions, OutputOptions
    from deploypipe.targets import load_target

    cpu = load_target("cpu")
    config = BuildConfig("zoo:test_resnet_cifar", target=cpu, data=DataOptions("digits"),
                         output=OutputOptions(tmp_path / "run", progress=False))
    keys, _ = stage_keys(config, cpu)
    assert stage_keys(config, dataclasses.replace(cpu, same_speed_margin=0.1))[0] == keys
    assert stage_keys(config, dataclasses.replace(cpu, threads=3))[0]["prune"] != keys["prune"]
