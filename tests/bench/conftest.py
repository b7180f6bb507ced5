"""Synthetic benchmark runs (no timing) and tiny suites shared by the bench tests."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pytest

from deploypipe.bench.results import BenchRun, CaseResult, RunSettings
from deploypipe.measure.fingerprint import hardware_fingerprint
from deploypipe.measure.stats import LatencyStats
from deploypipe.targets import load_target

TARGET = "cpu-batch32"


def noisy(median: float, cv: float, n: int = 10, seed: int = 0) -> list[float]:
    """``n`` per-round values around ``median`` with a lognormal spread of about ``cv``."""
    rng = np.random.default_rng(seed)
    return list(median * np.exp(rng.normal(0.0, cv, n)))


def case_result(case_id: str, values: Sequence[float], sha: str = "0" * 64) -> CaseResult:
    """A case whose round medians are ``values`` (p90/p99 a little above them)."""
    rounds = tuple(dataclasses.replace(LatencyStats.from_samples([v, v, v * 1.1, v * 1.2]),
                                       median=v) for v in values)
    return CaseResult(id=case_id, batch=1, shape=(3, 8, 8), model={"name": case_id},
                      onnx_sha256=sha, rounds=rounds)


def make_run(cases: Mapping[str, Sequence[float]], reference: Sequence[float] | None = None,
             *, fingerprint=None, target: str = TARGET) -> BenchRun:
    return BenchRun(
        suite="synthetic", target=load_target(target).to_dict(),
        fingerprint=fingerprint or hardware_fingerprint(),
        settings=RunSettings(repeats=10, warmup=1, iterations=4, statistic="median", seed=0),
        created="2025-01-01T00:00:00+00:00",
        cases=tuple(case_result(k, v) for k, v in cases.items()),
        reference=case_result("reference b1 16x8x8", reference) if reference else None,
        load_average={"before": [0.1, 0.1, 0.1], "after": [0.1, 0.1, 0.1]})


def other_fingerprint():
    return dataclasses.replace(hardware_fingerprint(), cpu="Imaginary CPU 9000",
                               logical_cores=128)


SMALL_SUITE = """
name = "{name}"
targets = ["cpu-batch32"]
batches = [8]
repeats = {repeats}
warmup = 2
iterations = 10

[gate]
max_slowdown = {threshold}

[[models]]
zoo = "test_resnet_cifar"
name = "resnet"

[[models]]
zoo = "test_mobilenet_v2"
name = "mobilenet"
kwargs = {{ width_mult = {width} }}
"""


@pytest.fixture
def write_suite(tmp_path: Path):
    """Write a two-model CPU suite (tiny ResNet and MobileNetV2 at batch 8) and return
    its path; ``width`` widens the MobileNetV2 (0.25 is the zoo's tiny default)."""
    def write(name: str = "small", *, width: float = 0.25, threshold: float = 0.10,
              repeats: int = 10, file: str | None = None) -> Path:
        path = tmp_path / (file or f"{name}-{width}.toml")
        path.write_text(SMALL_SUITE.format(name=name, width=width, threshold=threshold,
                                           repeats=repeats))
        return path
    return write
