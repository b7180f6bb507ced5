"""A real small build (its report.json and run directory), and a copy of it with the
latency-budget sections (table file, loop, result) added in the shape the latency stage
writes them, so that every section of the page has something to draw."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from deploypipe.cli import main

BUILD = ["build", "zoo:test_resnet_cifar", "--dataset", "digits", "--limit", "300", "--pretrain-epochs", "1",
         "--method", "iterative", "--method-arg", "steps=2", "--epochs", "1", "--profile-iterations", "5"]


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "run"
    assert main([*BUILD, "-o", str(out)]) == 0
    return out


@pytest.fixture()
def run_dir(built, tmp_path) -> Path:
    """A private copy of the build's run directory (tests may change it)."""
    return Path(shutil.copytree(built, tmp_path / "run"))


@pytest.fixture()
def latency_run(run_dir) -> Path:
    add_latency_sections(run_dir)
    return run_dir


def add_latency_sections(folder: Path) -> None:
    report = json.loads((folder / "report.json").read_text())
    groups = [g for g in report["groups"] if not g["frozen"]]
    table = {"format": "deploypipe.latency_table/3", "dense_ms": 0.05, "meta": {"target": "cpu"},
             "groups": {str(g["id"]): {"width": g["width_before"], "widths": list(range(1, g["width_before"] + 1)),
                                       "ms": [0.01 + 0.002 * k * (g["id"] + 1) for k in range(g["width_before"])],
                                       "key": [f"layer{g['id']}.conv.weight", 0, 0], "nodes": 4}
                        for g in groups}}
    (folder / "latency_table.json").write_text(json.dumps(table))
    report["latency_table"] = {"path": "latency_table.json", "dense_ms": 0.05, "groups": len(groups),
                               "samples": sum(g["width_before"] for g in groups), "target": "cpu"}
    report["latency_loop"] = [
        {"round": 1, "predicted_ms": 0.030, "measured_ms": 0.034, "budget_ms": 0.032, "dense_ms": 0.05,
         "note": "over the budget: scale 0.94"},
        {"round": 2, "predicted_ms": 0.029, "measured_ms": 0.0295, "budget_ms": 0.030, "dense_ms": 0.05, "note": ""}]
    report["latency_result"] = {"met": True, "sentence": "latency budget met in round 2 of 2: measured 0.0295 ms"}
    (folder / "report.json").write_text(json.dumps(report))
