"""tools/bench_cifar.py keeps rows of differently trained dense models apart."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

TOOL = Path(__file__).resolve().parents[2] / "tools" / "bench_cifar.py"


def bench_cifar():
    spec = importlib.util.spec_from_file_location("bench_cifar", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def row(epochs: int, variant: str, error: float, lr: float = 0.1) -> dict:
    cell = {"error": error, "error_se": 0.004, "macs_reduction": 2.0, "speedup": 1.2}
    return {"arch": "resnet56", "seed": 0, "budget_x": 2.0, "dense": {"error": error - 0.02},
            "variants": {variant: cell}, "finetune": "ft2x20000r@0.05",
            "dense_recipe": {"epochs": epochs, "lr": lr, "checkpoint": f"resnet56_s0_e{epochs}lr{lr:g}.pt"}}


def test_rows_from_other_dense_recipes_are_not_merged(tmp_path):
    tool = bench_cifar()
    out = tmp_path / "cifar10.json"
    out.write_text(json.dumps({"results": [row(8, "tp_l2_global", 0.25)]}))
    rows = tool.merged(out, [row(20, "dp_cpli", 0.10)], "ft2x20000r@0.05")
    assert len(rows) == 2
    by_epochs = {r["dense_recipe"]["epochs"]: r for r in rows}
    assert set(by_epochs[8]["variants"]) == {"tp_l2_global"}
    assert set(by_epochs[20]["variants"]) == {"dp_cpli"}


def test_rows_of_one_recipe_merge_their_variants(tmp_path):
    tool = bench_cifar()
    out = tmp_path / "cifar10.json"
    out.write_text(json.dumps({"results": [row(20, "tp_l2_global", 0.11)]}))
    rows = tool.merged(out, [row(20, "dp_cpli", 0.10)], "ft2x20000r@0.05")
    assert len(rows) == 1 and set(rows[0]["variants"]) == {"tp_l2_global", "dp_cpli"}


def test_table_names_the_dense_training_length(tmp_path):
    tool = bench_cifar()
    out = tmp_path / "cifar10.json"
    out.write_text(json.dumps({"results": [row(8, "tp_l2_global", 0.25), row(20, "tp_l2_global", 0.11)]}))
    text = tool.table(out)
    assert "| resnet56 (8 ep) | 2x MACs | Torch-Pruning L2 global | 25.00% |" in text
    assert "| resnet56 (20 ep) | 2x MACs | Torch-Pruning L2 global | 11.00% |" in text


def test_rows_trained_at_another_lr_are_not_merged(tmp_path):
    tool = bench_cifar()
    out = tmp_path / "cifar10.json"
    out.write_text(json.dumps({"results": [row(8, "tp_l2_global", 0.25)]}))
    rows = tool.merged(out, [row(8, "dp_cpli", 0.24, lr=0.05)], "ft2x20000r@0.05")
    assert sorted(tool.model_label(r) for r in rows) == ["resnet56 (8 ep)", "resnet56 (8 ep, lr 0.05)"]
