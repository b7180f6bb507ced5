"""Replay of the fuzzer's minimal failing graphs, and the shrinker itself."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from onnx import numpy_helper

from deploypipe.testing.fuzz import fails, fuzz, minimise

REGRESSIONS = json.loads((Path(__file__).parent / "fuzz_regressions.json").read_text())


if REGRESSIONS:  # minimal graphs on which the surgery once failed, kept forever
    @pytest.mark.parametrize("case", REGRESSIONS, ids=[f"seed{c['seed']}" for c in REGRESSIONS])
    def test_fuzz_regression(case):
        assert fails(case["spec"], case["drop_seed"]) is None


def test_a_short_fuzz_run_finds_nothing():
    result = fuzz(range(1000, 1040))
    assert result.graphs == 40 and not result.failures, result.failures[:1]
    assert result.prunable_groups > 2 * result.frozen_groups, "the fuzzer must mostly exercise prunable groups"


def test_fails_reports_a_broken_surgery(monkeypatch):
    """The property the regressions replay can fail: a shrink that leaves a channel's weights
    wrong is reported, not passed."""
    import deploypipe.testing.fuzz as fuzz_mod

    real = fuzz_mod.shrink

    def corrupt(analysis, drop):
        small = real(analysis, drop)
        init = next(i for i in small.graph.initializer if len(i.dims) == 4)
        arr = numpy_helper.to_array(init).copy()
        arr += 1.0
        init.CopyFrom(numpy_helper.from_array(arr, init.name))
        return small

    monkeypatch.setattr(fuzz_mod, "shrink", corrupt)
    message = fails(fuzz_mod.random_spec(1000), 0)
    assert message is not None and "AssertionError" in message


def test_minimise_keeps_only_what_the_failure_needs():
    spec = {"in_channels": 3, "size": 8, "stem": 8, "head": "gap_gemm", "classes": 3, "seed": 0,
            "blocks": [{"kind": k, "c": 12, "act": "GELU", "bn": True, "k": 3}
                       for k in ("conv", "se", "csp", "pool", "residual")]}
    needs_csp = lambda s, d: any(b["kind"] == "csp" for b in s["blocks"])  # noqa: E731
    small = minimise(spec, 0, needs_csp)
    assert [b["kind"] for b in small["blocks"]] == ["csp"]
    assert small["blocks"][0]["c"] == 2 and small["blocks"][0]["act"] == "none"
