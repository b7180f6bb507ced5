"""``deploypipe lut`` and ``deploypipe build --latency-*`` through the CLI, on real timing.

Real measurements on a shared machine are noisy, so these tests check what the commands
write and refuse, not how close the loop came (the fake-oracle tests in test_loop do that).
"""
from __future__ import annotations

import json
import textwrap

import onnx
import pytest

from deploypipe.cli import main

# a quick profile: few iterations, so tables take seconds
QUICK_PROFILE = """
name = "quick"
batch = 16
threads = 1
round_to = 8
warmup = 1
iterations = 5
"""


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    path = tmp_path_factory.mktemp("profiles") / "quick.toml"
    path.write_text(textwrap.dedent(QUICK_PROFILE))
    return path


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    from deploypipe.export import export_onnx
    from deploypipe.models import create_model

    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    export_onnx(create_model("test_resnet_cifar", in_channels=1, num_classes=10), path, input_shape=(1, 1, 8, 8))
    return path


def test_lut_measures_writes_and_then_reads_the_cache(tiny_onnx, profile, tmp_path, capsys):
    out = tmp_path / "table.json"
    code, stdout, _ = run(capsys, "lut", tiny_onnx, "--target", profile, "-o", out)
    assert code == 0, stdout
    table = json.loads(out.read_text())
    assert table["format"] == "deploypipe.latency_table/3" and table["groups"]
    for g in table["groups"].values():
        assert g["widths"][-1] == g["width"] and len(g["widths"]) == len(g["ms"]) and min(g["ms"]) > 0
    assert "measured in" in stdout
    code, stdout, _ = run(capsys, "lut", tiny_onnx, "--target", profile)
    assert code == 0 and "from the cache" in stdout


@pytest.mark.parametrize("args,needle", [
    (["--groups", "999"], "not a prunable group"),
    (["--target", "warp-drive"], "unknown target"),
    (["--step", "0"], "must be positive"),
])
def test_lut_mistakes_are_one_sentence(tiny_onnx, capsys, args, needle):
    code, _, err = run(capsys, "lut", tiny_onnx, *args)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


QUICK_BUILD = ["--dataset", "digits", "--limit", "200", "--epochs", "1", "--pretrain-epochs", "1",
               "--profile-iterations", "5"]


def test_build_with_a_latency_ratio_reports_every_round(profile, tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, err = run(capsys, "build", "zoo:test_resnet_cifar", "-o", out, "--target", profile,
                            "--latency-ratio", "0.85", "--latency-rounds", "3", *QUICK_BUILD)
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    assert report["budget"] == {"kind": "latency", "value": 0.85, "mode": "fraction"}
    rounds = report["latency_loop"]
    assert 1 <= len(rounds) <= 3
    for r in rounds:
        assert {"predicted_ms", "measured_ms", "error", "scale", "budget_ms"} <= set(r)
        assert r["error"] == pytest.approx((r["predicted_ms"] - r["measured_ms"]) / r["measured_ms"])
    assert (out / report["latency_table"]["path"]).is_file() and report["latency_table"]["groups"] > 0
    result = report["latency_result"]
    assert result["final_widths_match_loop"] and "latency budget" in result["sentence"]
    # the files the build wrote, timed interleaved as the loop times: judged against their own dense
    assert result["final_budget_ms"] == pytest.approx(0.85 * result["final_dense_ms"])
    assert result["final_meets_budget"] == (result["final_pruned_ms"] <= result["final_budget_ms"])
    assert "exported pruned model, timed beside the dense one" in stdout
    assert report["pruned"]["macs"] < report["dense"]["macs"]
    assert "latency budget" in stdout and "latency" in [s["name"] for s in report["stages"]]
    widths = [g["width_after"] for g in report["groups"] if not g["frozen"]]
    assert all(w % 8 == 0 or w < 8 for w in widths)


def test_build_budget_below_the_fastest_is_one_sentence(profile, tmp_path, capsys):
    code, _, err = run(capsys, "build", "zoo:test_resnet_cifar", "-o", tmp_path / "run", "--target", profile,
                       "--latency-budget", "0.0001ms", *QUICK_BUILD)
    assert code == 2 and "fastest achievable" in err and "Traceback" not in err
    assert len(err.strip().splitlines()[-1:]) == 1 and "ms" in err.strip().splitlines()[-1]


def test_latency_budgets_exclude_the_other_budgets(tmp_path, capsys):
    code, _, err = run(capsys, "build", "zoo:test_resnet_cifar", "-o", tmp_path / "run",
                       "--latency-ratio", "0.5", "--ratio", "0.3")
    assert code == 2 and "not allowed with" in err


def test_build_of_an_onnx_file_under_a_latency_ratio(tiny_onnx, profile, tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, err = run(capsys, "build", tiny_onnx, "-o", out, "--target", profile, "--latency-ratio", "0.85",
                            "--latency-rounds", "2", "--profile-iterations", "5")
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    assert report["latency_loop"] and (out / "latency_table.json").is_file()
    chosen = report["latency_loop"][report["latency_result"]["chosen_round"] - 1]
    widths = [g["width_after"] for g in report["groups"]]
    assert widths == chosen["widths"] and report["verification"]["passed"]
    assert report["latency_result"]["final_budget_ms"] == pytest.approx(0.85 * report["latency_result"]["final_dense_ms"])


@pytest.mark.parametrize("method", ["group_fisher", "cascade"])
def test_a_method_that_cannot_meet_a_latency_budget_is_refused_before_the_table(method, profile, tmp_path,
                                                                                 capsys, monkeypatch):
    def measure_table(*args, **kwargs):
        raise AssertionError("the latency table was measured for a budget the method refuses")

    monkeypatch.setattr("deploypipe.hw.measure_table", measure_table)
    code, _, err = run(capsys, "build", "zoo:test_resnet_cifar", "-o", tmp_path / "run", "--target", profile,
                       "--method", method, "--latency-ratio", "0.5", *QUICK_BUILD)
    assert code == 2 and f"method {method!r} cannot meet" in err and "--ratio" in err and "Traceback" not in err
