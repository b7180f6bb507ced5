"""`deploypipe bench` through deploypipe.cli.main: exit 0 passed, 1 regression, 2 usage
error; a deliberately wider model is caught; baselines from other hardware are refused."""
from __future__ import annotations

import json

import pytest

from deploypipe.bench import load_run
from deploypipe.cli import main
from deploypipe.measure.fingerprint import hardware_fingerprint

from .conftest import SMALL_SUITE, TARGET


@pytest.fixture(scope="module")
def suites(tmp_path_factory):
    """The same two-case suite, and a copy whose MobileNetV2 is 8x wider (about 9x slower)."""
    folder = tmp_path_factory.mktemp("suites")
    paths = {}
    for key, width in (("same", 0.25), ("wide", 2.0)):
        paths[key] = folder / f"{key}.toml"
        paths[key].write_text(SMALL_SUITE.format(name="small", width=width, threshold=0.10,
                                                 repeats=10))
    return paths


@pytest.fixture(scope="module")
def baselines(tmp_path_factory, suites):
    folder = tmp_path_factory.mktemp("baselines")
    assert main(["bench", str(suites["same"]), "--baselines", str(folder), "--save", "base"]) == 0
    return folder


def _out(capsys) -> list[str]:
    return capsys.readouterr().out.strip().splitlines()


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("deploypipe: error: "), err
    return err[0]


def _rows(lines: list[str]) -> dict[str, str]:
    return {name: next(l for l in lines if l.startswith(name)) for name in
            ("resnet b8 3x32x32", "mobilenet b8 3x32x32", "reference b1 16x32x32")}


def test_the_baseline_is_stored_per_target_and_fingerprint(baselines):
    path = baselines / TARGET / hardware_fingerprint().key() / "base.json"
    run = load_run(path)
    assert [c.id for c in run.cases] == ["resnet b8 3x32x32", "mobilenet b8 3x32x32"]
    assert all(len(c.rounds) == 10 for c in run.cases) and run.reference is not None


def test_an_identical_run_passes(suites, baselines, capsys):
    code = main(["bench", str(suites["same"]), "--baselines", str(baselines), "--compare", "base"])
    lines = _out(capsys)
    assert code == 0, lines
    assert lines[-1].startswith("PASSED: no case slower than +10 %")
    rows = _rows(lines)
    assert "REGRESSION" not in rows["resnet b8 3x32x32"] + rows["mobilenet b8 3x32x32"]
    assert "(machine drift)" in rows["reference b1 16x32x32"]


def test_a_wider_model_is_caught(suites, baselines, capsys, tmp_path):
    out = tmp_path / "result.json"
    code = main(["bench", str(suites["wide"]), "--baselines", str(baselines), "--compare", "base",
                 "--json", str(out)])
    lines = _out(capsys)
    assert code == 1, lines
    assert lines[-1].startswith("FAILED: ") and "mobilenet b8 3x32x32 (+" in lines[-1]
    rows = _rows(lines)
    assert rows["mobilenet b8 3x32x32"].endswith("REGRESSION")
    assert "REGRESSION" not in rows["resnet b8 3x32x32"]
    data = json.loads(out.read_text())
    verdicts = {v["case"]: v for v in data["comparison"]["cases"]}
    assert verdicts["mobilenet b8 3x32x32"]["status"] == "regression"
    assert verdicts["mobilenet b8 3x32x32"]["ratio"]["low"] > 1.1, verdicts["mobilenet b8 3x32x32"]["ratio"]
    assert data["passed"] is False and data["baseline"] == "base"
    assert data["run"]["fingerprint"]["key"] == hardware_fingerprint().key()


def test_too_noisy_to_judge_is_reported_and_fails_only_with_strict(suites, baselines, capsys,
                                                                  tmp_path):
    """A baseline from another machine whose rounds scatter 10x: every case inconclusive."""
    data = json.loads((baselines / TARGET / hardware_fingerprint().key() / "base.json").read_text())
    data["fingerprint"]["cpu"] = "Imaginary CPU 9000"
    for case in data["cases"]:
        for i, r in enumerate(case["rounds"]):
            r["medianMs"] *= (0.3, 3.0)[i % 2]
    noisy = tmp_path / "noisy.json"
    noisy.write_text(json.dumps(data))
    args = ["bench", str(suites["same"]), "--compare", str(noisy), "--allow-other-hardware"]
    assert main(args + ["--strict"]) == 1
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert "warning: comparing with a baseline from other hardware" in captured.err
    assert all(row.endswith("inconclusive") for name, row in _rows(lines).items()
               if name != "reference b1 16x32x32")
    assert any("too noisy to judge" in l for l in lines)
    assert lines[-1].startswith("FAILED: 2 cases too noisy to judge")


@pytest.mark.parametrize("extra, message", [
    (["--compare", "nothing"], "there is no baseline 'nothing' for target 'cpu-batch32'"),
    (["--target", "cpu"], "is for targets cpu-batch32, not 'cpu'"),
    (["--save", "a b"], "baseline name 'a b' is not a simple name"),
    (["--target", "gpu"], "is for targets cpu-batch32, not 'gpu'"),
])
def test_usage_errors_exit_2_in_one_line(suites, baselines, capsys, extra, message):
    assert main(["bench", str(suites["same"]), "--baselines", str(baselines), *extra]) == 2
    assert message in _error_line(capsys)


def test_a_baseline_from_other_hardware_is_refused_before_timing(suites, baselines, capsys,
                                                                tmp_path):
    data = json.loads((baselines / TARGET / hardware_fingerprint().key() / "base.json").read_text())
    data["fingerprint"]["gpu"] = "Imaginary GPU"
    other = tmp_path / "other.json"
    other.write_text(json.dumps(data))
    assert main(["bench", str(suites["same"]), "--compare", str(other)]) == 2
    line = _error_line(capsys)
    assert "other hardware" in line and "gpu 'Imaginary GPU' then, None now" in line
    assert "--allow-other-hardware" in line
    # the same by name: a baseline folder that holds it only under another fingerprint
    moved = tmp_path / "store" / TARGET / "0123456789ab"
    moved.mkdir(parents=True)
    (moved / "main.json").write_text(json.dumps(data))
    assert main(["bench", str(suites["same"]), "--baselines", str(tmp_path / "store"),
                 "--compare", "main"]) == 2
    assert "was taken on other hardware (fingerprint 0123456789ab)" in _error_line(capsys)


def test_missing_and_invalid_suites_exit_2(tmp_path, capsys):
    assert main(["bench", str(tmp_path / "none.toml")]) == 2
    assert "does not exist" in _error_line(capsys)
    bad = tmp_path / "bad.toml"
    bad.write_text("repeats = 1\n[[models]]\nzoo = 'test_vgg'\n")
    assert main(["bench", str(bad)]) == 2
    assert "field 'repeats' must be an integer >= 3" in _error_line(capsys)
    assert main(["bench"]) == 2
