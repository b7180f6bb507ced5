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


def table_of(tmp_path, rows: list) -> str:
    out = tmp_path / "table.json"
    out.write_text(json.dumps({"results": rows}))
    return bench_cifar().table(out)


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
    text = table_of(tmp_path, [row(8, "tp_l2_global", 0.25), row(20, "tp_l2_global", 0.11)])
    assert "| resnet56 (8 ep) | 2x MACs | Torch-Pruning L2 global | 25.00 | 25.00 ± 0.40% |" in text
    assert "| resnet56 (20 ep) | 2x MACs | Torch-Pruning L2 global | 11.00 | 11.00 ± 0.40% |" in text


def test_rows_trained_at_another_lr_are_not_merged(tmp_path):
    tool = bench_cifar()
    out = tmp_path / "cifar10.json"
    out.write_text(json.dumps({"results": [row(8, "tp_l2_global", 0.25)]}))
    rows = tool.merged(out, [row(8, "dp_cpli", 0.24, lr=0.05)], "ft2x20000r@0.05")
    assert sorted(tool.model_label(r) for r in rows) == ["resnet56 (8 ep)", "resnet56 (8 ep, lr 0.05)"]


def test_rows_fine_tuned_otherwise_are_kept_apart_and_labelled(tmp_path):
    tool = bench_cifar()
    out = tmp_path / "cifar10.json"
    out.write_text(json.dumps({"results": [row(8, "tp_l2_global", 0.25)]}))
    rows = tool.merged(out, [row(8, "tp_l2_global", 0.23)], "ft2x20000r@0.05kd")
    assert sorted((r["finetune"], r["variants"]["tp_l2_global"]["error"]) for r in rows) == \
        [("ft2x20000r@0.05", 0.25), ("ft2x20000r@0.05kd", 0.23)]
    text = table_of(tmp_path, rows)
    assert "| Torch-Pruning L2 global | 25.00 |" in text
    assert "| Torch-Pruning L2 global, **KD fine-tuning** | 23.00 |" in text


def test_dense_row_lists_every_seed(tmp_path):
    first, second = row(8, "tp_l2_global", 0.25), {**row(8, "dp_cpli", 0.24), "seed": 1}
    second["dense"] = {"error": 0.2}
    text = table_of(tmp_path, [first, second])
    assert "| resnet56 (8 ep) | dense | trained by `deploypipe train` | 23.00 / 20.00 |" in text
    # each variant ran one seed: its error stands under that seed, the other marked not run
    assert "| Torch-Pruning L2 global | 25.00 / — | 25.00 ± 0.40% |" in text
    assert "| deploypipe CPLI, x8 | — / 24.00 | 24.00 ± 0.40% |" in text

    broken = {**row(8, "dp_cpli", 0.24), "seed": 1}
    broken["variants"]["dp_cpli"] = {"error_message": "the budget could not be met"}
    text = table_of(tmp_path, [row(8, "dp_cpli", 0.25), broken])
    assert "| deploypipe CPLI, x8 | 25.00 / failed | 25.00 ± 0.40% |" in text  # ran and failed: not "not run"


def test_distillation_is_part_of_the_fine_tuning_tag():
    tool = bench_cifar()
    assert tool.finetune_tag(tool.parse([])) == "ft2x20000r@0.05"
    assert tool.finetune_tag(tool.parse(["--finetune-distill"])) == "ft2x20000r@0.05kd"


def test_a_seed_retrained_later_is_another_dense_model(tmp_path):
    """Training on the CPU did not repeat bit for bit across sessions: a seed's dense model
    retrained later (another checkpoint digest) gets rows of its own, never merged with the
    cells pruned from the first, and the table gives it its own column, marked s0′."""
    tool = bench_cifar()
    out = tmp_path / "cifar10.json"
    first = row(8, "tp_l2_global", 0.25)  # measured before checkpoints were hashed
    out.write_text(json.dumps({"results": [first]}))
    again = row(8, "dp_cpli", 0.24)
    again["dense"] = {"error": 0.21, "checkpoint_sha": "abc123"}
    rows = tool.merged(out, [again], "ft2x20000r@0.05")
    assert len(rows) == 2 and sorted(set(r["variants"]) == {"tp_l2_global"} for r in rows) == [False, True]
    same = row(8, "tp_l2_global", 0.22)
    same["dense"] = {"error": 0.21, "checkpoint_sha": "abc123"}
    out.write_text(json.dumps({"results": rows}))
    rows = tool.merged(out, [same], "ft2x20000r@0.05")
    assert len(rows) == 2
    assert {tuple(sorted(r["variants"])) for r in rows} == {("tp_l2_global",), ("dp_cpli", "tp_l2_global")}
    text = table_of(tmp_path, rows)
    assert "| trained by `deploypipe train` | 23.00 / 21.00 (s0′) |" in text
    assert "| Torch-Pruning L2 global | 25.00 / 22.00 |" in text and "| deploypipe CPLI, x8 | — / 24.00 |" in text


def test_every_variant_has_a_label_and_deploypipe_variants_are_build_commands():
    """A variant added without a table label, or with options ``deploypipe build`` does not
    take, would fail hours into a benchmark run; the options also pass the build's own checks
    of importance against allocation."""
    from deploypipe.cli import build_parser
    from deploypipe.prune.importance import check_allocation

    tool = bench_cifar()
    assert set(tool.LABELS) == set(tool.VARIANTS)
    for name in tool.VARIANTS:
        if not name.startswith("dp_"):
            continue
        args = build_parser().parse_args(["build", "model.pt", "-o", "out", *tool.dp_flags(name, 2.0, 0.5)])
        assert args.command == "build"
        check_allocation(args.allocation, args.importance)
    assert tool.dp_flags("dp_cpli_percost", 3.0)[:1] == ["--macs-budget=3x"]
