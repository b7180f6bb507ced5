"""The README's bring-your-own-model example, as a user runs it: a model file of their own,
a plain state_dict and a data function with their own normalisation."""
from __future__ import annotations

import json
from pathlib import Path

from deploypipe.cli import main

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "custom_cnn"


def test_custom_model_example_builds(tmp_path):
    weights = EXAMPLE / "weights.pt"
    before = weights.read_bytes()
    out = tmp_path / "run"
    code = main(["build", str(weights), "--arch", f"{EXAMPLE}/net.py:build",
                 "--dataset", f"py:{EXAMPLE}/data.py:load", "--target", "cpu-batch32",
                 "--macs-budget", "2x", "--epochs", "1", "-o", str(out), "-q"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    dense, pruned = report["dense"], report["pruned"]
    assert dense["macs"] / pruned["macs"] >= 1.9
    assert dense["accuracy"] > 0.95 and pruned["accuracy"] > 0.85
    assert report["verification"]["passed"]
    assert weights.read_bytes() == before, "the user's weights are never modified"
    assert {"dense.onnx", "pruned.onnx", "pruned.pt"} <= {p.name for p in out.iterdir()}
