"""`deploypipe build` end to end on tiny models and real data (digits), through the CLI."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import onnx
import pytest
import torch

from deploypipe.cli import main
from deploypipe.graph import analyse, load_onnx
from deploypipe.utils.files import sha256_file

QUICK = ["--dataset", "digits", "--limit", "300", "--epochs", "1", "--profile-iterations", "5",
         "--target", "cpu"]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small CIFAR-style resnet trained briefly on digits, as a deploypipe checkpoint."""
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    code = main(["train", "--arch", "test_resnet_cifar", "--dataset", "digits", "--epochs", "2",
                 "--limit", "300", "-o", str(path)])
    assert code == 0
    return path


def test_build_checkpoint_writes_the_run_directory(trained, tmp_path, capsys):
    before = sha256_file(trained)
    out = tmp_path / "run"
    code, stdout, _ = run(capsys, "build", trained, "-o", out, "--macs-budget", "2x", *QUICK)
    assert code == 0, stdout
    assert sha256_file(trained) == before
    assert {"dense.onnx", "pruned.onnx", "pruned.pt", "report.json"} <= {p.name for p in out.iterdir()}
    report = json.loads((out / "report.json").read_text())
    for key in ("deploypipe_version", "created", "command", "target", "method", "budget", "dense", "pruned",
                "groups", "verification", "stages"):
        assert key in report
    assert set(report["target"]) >= {"name", "backend", "fingerprint"}
    assert set(report["pruned"]["latency_ms"]) >= {"median", "p90", "p99", "cv"}
    assert report["pruned"]["macs"] <= report["dense"]["macs"] / 2
    assert 0 <= report["pruned"]["accuracy"] <= 1 and report["verification"]["passed"]
    assert report["verification"]["oracle_max_abs"] < 1e-4
    assert all(g["width_after"] <= g["width_before"] and g["width_after"] >= 1 for g in report["groups"])
    assert [s["name"] for s in report["stages"]][:3] == ["load", "data", "export_dense"]
    # the ONNX file counts the same MACs the report does; the checkpoint reloads weights-only
    assert analyse(load_onnx(out / "pruned.onnx")).macs == report["pruned"]["macs"]
    state = torch.load(out / "pruned.pt", weights_only=True)
    assert state["format"].startswith("deploypipe.checkpoint")
    assert "accuracy" in stdout and "x fewer" in stdout
    # data, a checkpoint and a MACs budget, no method given: CPLI on Fisher per MAC, said so
    assert (report["method"]["name"], report["method"]["importance"], report["method"]["allocation"]) == \
        ("cpli", "fisher", "per-cost") and "default" in report["method"]["chosen_by"]
    assert "cpli / fisher / per-cost (the default with data and a MACs budget)" in stdout
    # the speed claim comes from dense and pruned timed in alternating bursts, with its interval
    speed = report["speed"]  # 11 bursts even at --profile-iterations 3: enough for a 95% interval
    assert speed["bursts"] == 11 and speed["low"] <= speed["speedup"] <= speed["high"]
    assert speed["verdict"] in ("faster", "slower", "same speed", "inconclusive")
    assert "timed interleaved" in stdout and "profiled in turn" in stdout
    assert "timed interleaved" in (out / "report.html").read_text()


def test_build_from_zoo_global_taylor_iterative(tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, _ = run(capsys, "build", "zoo:test_mobilenet_v2", "-o", out, "--pretrain-epochs", "1",
                          "--method", "iterative", "--method-arg", "steps=2", "--importance", "taylor",
                          "--allocation", "global", "--ratio", "0.4", "--round-to", "2", *QUICK)
    assert code == 0, stdout
    report = json.loads((out / "report.json").read_text())
    assert len(report["rounds"]) == 2 and report["method"]["params"] == {"steps": 2}
    widths = [g["width_after"] for g in report["groups"] if not g["frozen"]]
    assert all(w % 2 == 0 or w < 2 for w in widths)


def test_build_onnx_input_prunes_by_weights_and_verifies(tmp_path, capsys):
    from deploypipe.testing.graphs import build_cnn, random_spec

    model = tmp_path / "m.onnx"
    onnx.save(build_cnn(random_spec(7)), str(model))
    code, stdout, _ = run(capsys, "build", model, "-o", tmp_path / "run", "--ratio", "0.5",
                          "--profile-iterations", "5")
    assert code == 0 and "oracle" in stdout
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["pruned"]["macs"] < report["dense"]["macs"] and report["dense"]["accuracy"] is None
    assert report["speed"]["verdict"] in ("faster", "slower", "same speed", "inconclusive")


def test_an_onnx_build_refuses_the_per_cost_allocation_before_any_work(tmp_path, capsys):
    from deploypipe.testing.graphs import build_cnn, random_spec

    model = tmp_path / "m.onnx"
    onnx.save(build_cnn(random_spec(7)), str(model))
    code, _, err = run(capsys, "build", model, "-o", tmp_path / "run", "--allocation", "per-cost")
    assert code == 2 and "per-cost allocation needs a criterion that estimates the loss" in err
    assert "Traceback" not in err and not (tmp_path / "run" / "dense.onnx").exists()


def test_a_failed_interleaved_timing_leaves_a_note_not_a_failed_build(tmp_path, monkeypatch):
    from deploypipe.hw.timer import TargetTimer
    from deploypipe.pipeline.speed import interleaved_speed
    from deploypipe.targets import load_target
    from deploypipe.testing.graphs import build_cnn, random_spec

    for stem in ("dense", "pruned"):
        onnx.save(build_cnn(random_spec(7)), str(tmp_path / f"{stem}.onnx"))

    def broken(self, models):
        raise RuntimeError("session lost")

    monkeypatch.setattr(TargetTimer, "bursts_of", broken)
    assert interleaved_speed(tmp_path, load_target("cpu")) == {"note": "interleaved timing failed: session lost"}


def test_the_same_speed_margin_is_the_target_profiles(tmp_path, monkeypatch):
    from deploypipe.hw.timer import TargetTimer
    from deploypipe.pipeline.speed import interleaved_speed
    from deploypipe.targets import load_target
    from deploypipe.testing.graphs import build_cnn, random_spec

    for stem in ("dense", "pruned"):
        onnx.save(build_cnn(random_spec(7)), str(tmp_path / f"{stem}.onnx"))
    load = [1.0, 1.1, 0.9, 1.05, 0.95, 1.0, 1.02, 0.98, 1.0, 1.01, 0.99]  # pruned 5% faster in every burst
    monkeypatch.setattr(TargetTimer, "bursts_of", lambda self, models: ([1.05 * x for x in load], load))
    cpu = load_target("cpu")
    assert interleaved_speed(tmp_path, cpu)["verdict"] == "faster"  # 5% is beyond the default 3%
    wide = interleaved_speed(tmp_path, dataclasses.replace(cpu, same_speed_margin=0.1))
    assert wide["verdict"] == "same speed" and wide["margin"] == 0.1


def test_a_gpu_target_gets_the_interleaved_verdict_too(tmp_path, monkeypatch):
    """dense and pruned run at one precision on a GPU target as on the CPU: the build's verdict
    is theirs timed in alternating bursts (TargetTimer builds an engine for each), not 'no claim'."""
    from deploypipe.hw.timer import PAIR_BURSTS, TargetTimer
    from deploypipe.pipeline.speed import interleaved_speed
    from deploypipe.targets import load_target
    from deploypipe.testing.graphs import build_cnn, random_spec

    for stem in ("dense", "pruned"):
        onnx.save(build_cnn(random_spec(7)), str(tmp_path / f"{stem}.onnx"))
    seen = []

    def bursts(self, models):
        seen.append((self.target.name, self.bursts, [m.graph.input[0].type.tensor_type.shape.dim[0].dim_value
                                                     for m in models]))
        return [2.0] * PAIR_BURSTS, [1.0] * PAIR_BURSTS

    monkeypatch.setattr(TargetTimer, "bursts_of", bursts)
    target = load_target("torch-cuda")
    speed = interleaved_speed(tmp_path, target)
    assert speed["verdict"] == "faster" and speed["dense_ms"] == 2.0 and speed["pruned_ms"] == 1.0
    assert seen == [("torch-cuda", PAIR_BURSTS, [target.batch, target.batch])]


@pytest.mark.parametrize("args,needle", [
    (["--ratio", "1.5"], "between 0 and 1"),
    (["--macs-budget", "1000x"], "budget"),
    (["--importance", "astrology"], "unknown importance criterion"),
    (["--method", "magic"], "unknown pruning method"),
    (["--allocation", "per-cost"], "importance 'l1' scores weights, which do not compare across layers"),
    (["--target", "warp-drive"], "target"),
    (["--dataset", "folder:/nonexistent/data"], "does not exist"),
])
def test_bad_build_requests_are_one_sentence(trained, tmp_path, capsys, args, needle):
    base = [a for a in QUICK if a not in ("--target", "cpu")]
    if "--dataset" in args:
        base = base[2:]
    code, _, err = run(capsys, "build", trained, "-o", tmp_path / "run", *base, *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert needle in lines[-1] and "Traceback" not in err


def test_a_profile_input_shape_the_model_cannot_take_is_refused_before_training(tmp_path):
    from deploypipe.errors import InputError
    from deploypipe.pipeline.build import build
    from deploypipe.pipeline.config import BuildConfig, DataOptions, OutputOptions, TrainOptions
    from deploypipe.targets import load_target

    target = dataclasses.replace(load_target("cpu"), input_shape=(1, 32, 32))
    config = BuildConfig("zoo:test_resnet_cifar", target=target, data=DataOptions("digits"),
                         train=TrainOptions(pretrain_epochs=1, epochs=0),
                         output=OutputOptions(tmp_path / "run", progress=False))
    with pytest.raises(InputError, match=r"sets input_shape \[1, 32, 32\], but the model takes"):
        build(config)
    assert not (tmp_path / "run" / "trained.pt").exists()


def test_batchnorm_statistics_are_re_estimated_after_pruning(tmp_path, capsys):
    """Without fine-tuning, the pruned model is evaluated with statistics of its own
    (``--bn-batches``, default 20); ``--bn-batches 0`` keeps the dense model's, as before."""
    model = tmp_path / "model.pt"  # trained well enough that pruning has accuracy to lose
    assert main(["train", "--arch", "test_resnet_cifar", "--dataset", "digits", "--epochs", "15", "--limit", "1000",
                 "-o", str(model)]) == 0
    quick = ["--dataset", "digits", "--limit", "1000", "--epochs", "0", "--profile-iterations", "5", "--target", "cpu",
             "--macs-budget", "3x", "--method", "oneshot"]  # plain removal: CPLI's refit would hide the stale statistics
    reports = {}
    for bn in ("20", "0"):
        code, stdout, _ = run(capsys, "build", model, "-o", tmp_path / bn, "--bn-batches", bn, *quick)
        assert code == 0, stdout
        reports[bn] = json.loads((tmp_path / bn / "report.json").read_text())
    recal = reports["20"]["method"]["bn_recalibration"]
    assert recal["batches"] == 20 and recal["images"] > 0
    assert recal["accuracy_before"] == reports["0"]["rounds"][-1]["accuracy"]  # the same pruning, stale statistics
    assert "bn_recalibration" not in reports["0"]["method"]
    assert reports["20"]["pruned"]["accuracy"] > reports["0"]["pruned"]["accuracy"] + 0.1, (recal, reports["0"]["pruned"])
    assert "BatchNorm statistics were re-estimated" in (tmp_path / "20" / "report.html").read_text()
