"""Distributed training: two gloo ranks on this machine (through torchrun) train like one
process with the same global batch, and end with identical weights and pruned widths;
the pieces (launcher argv, batch split, collectives in a world of one) on their own."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from deploypipe.errors import InputError
from deploypipe.train import agree, all_reduce_sum, broadcast_object, on_rank_zero
from deploypipe.train.dist import DistEnv
from deploypipe.train.launch import should_launch, strip_nproc, torchrun_argv
from deploypipe.train.loaders import rank_batch_size

WORKER = Path(__file__).with_name("ddp_worker.py")
REPO = Path(__file__).resolve().parents[2]


def _run(args: list[str], out: Path) -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    out.mkdir()
    proc = subprocess.run([sys.executable, *args, str(out)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(p.read_text()) for p in sorted(out.glob("rank*.json"))]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[dict, list[dict]]:
    base = tmp_path_factory.mktemp("ddp")
    single = _run([str(WORKER)], base / "one")
    double = _run(["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(WORKER)],
                  base / "two")
    return single[0], double


def test_two_ranks_learn_like_one_process_with_the_same_global_batch(runs):
    one, two = runs
    assert [r["world"] for r in two] == [2, 2] and [r["rank"] for r in two] == [0, 1]
    assert one["world"] == 1
    assert two[0]["steps"] == one["steps"] == 60  # 3 epochs of ceil(1259 / 64) global batches
    assert one["test_acc"] > 0.85 and two[0]["test_acc"] > 0.85
    assert abs(two[0]["test_acc"] - one["test_acc"]) <= 0.05  # 269 test images: 0.05 is 13 of them
    assert abs(two[0]["train_loss"] - one["train_loss"]) <= 0.1


def test_every_rank_ends_with_identical_weights_and_widths(runs):
    _, (r0, r1) = runs
    assert r0["trained"] == r1["trained"]  # parameters and BatchNorm statistics
    assert r0["widths"] == r1["widths"] and r0["kept"] == r1["kept"]
    assert r0["pruned"] == r1["pruned"]
    assert r0["rounds"] == r1["rounds"] == 3
    assert sum(r0["widths"]) < 48  # something was pruned (dense: 4+4+8+8+16+16 prunable)


def test_group_fisher_removes_the_same_channels_on_every_rank(runs):
    _, (r0, r1) = runs
    assert r0["fisher"] == r1["fisher"]  # widths, kept channel indices and weights
    assert sum(r0["fisher"]["widths"]) < sum(r0["dense_widths"])


def test_rank_zero_decides_when_ranks_disagree(runs):
    _, (r0, r1) = runs
    for r in (r0, r1):  # rank 0 asked to drop channel 0 of the group, rank 1 channel 1
        assert r["forced"]["after"] == r["forced"]["before"][1:]


def test_evaluation_and_collectives_agree_across_ranks(runs):
    _, (r0, r1) = runs
    for r in (r0, r1):
        assert r["test_acc"] == r["test_acc_local"]  # rank-summed counts == one rank on the whole split
        assert r["summed"] == [3.0, 2.0]  # [1, 1] + [2, 1]
        assert r["error"] == "rank 0 says no."  # rank 0's error raised on every rank
    assert r0["test_acc"] == r1["test_acc"] and r0["val_acc"] == r1["val_acc"]


def test_torchrun_argv_runs_the_same_command_without_nproc():
    argv = torchrun_argv(["-v", "build", "zoo:x", "--nproc", "2", "-o", "r", "--nproc=3"], 2)
    assert argv[:4] == ["--standalone", "--nnodes", "1", "--nproc-per-node"]
    assert argv[4] == "2" and argv[5:7] == ["-m", "deploypipe"]
    assert argv[7:] == ["-v", "build", "zoo:x", "-o", "r"]
    assert strip_nproc(["--nproc", "4"]) == []


def test_should_launch_only_outside_torchrun(monkeypatch):
    for key in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    assert should_launch(2) and not should_launch(1) and not should_launch(None)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert not should_launch(2)  # a torchrun worker: torchrun already chose the processes
    assert DistEnv.from_environ() == DistEnv(0, 2, 0)


def test_global_batch_split_over_ranks(caplog):
    logger = logging.getLogger("deploypipe")
    logger.addHandler(caplog.handler)  # the CLI's configure() may have stopped propagation
    try:
        assert rank_batch_size(128, 2) == 64
        assert rank_batch_size(100, 3) == 33
    finally:
        logger.removeHandler(caplog.handler)
    assert "global batch 99" in caplog.text
    with pytest.raises(InputError, match="cannot be split over 4 processes"):
        rank_batch_size(3, 4)


def test_collectives_are_identity_in_a_world_of_one():
    value = {"a": np.arange(3)}
    assert broadcast_object(value) is value
    assert agree(value, what="x") is value
    assert all_reduce_sum([1, 2]).tolist() == [1.0, 2.0]
    assert on_rank_zero(lambda a, b: a + b, 2, b=3) == 5


@pytest.mark.slow
def test_cli_nproc_relaunches_through_torchrun_and_rank_zero_writes(tmp_path):
    out = tmp_path / "model.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-m", "deploypipe", "train", "--arch", "test_resnet_cifar", "--dataset",
                           "digits", "--epochs", "1", "--limit", "300", "-o", str(out), "--nproc", "2"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "distributed: 2 processes (gloo)" in proc.stderr
    assert proc.stdout.count("wrote ") == 1 and proc.stderr.count("epoch 1/1") == 1  # rank 0 only
    assert torch.load(out, weights_only=True)["format"].startswith("deploypipe.checkpoint")
