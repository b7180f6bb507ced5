"""Replay of the fuzzer's minimal failing graphs, and the shrinker itself."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from deploypipe.testing.fuzz import check, fuzz, minimise

REGRESSIONS = json.loads((Path(__file__).parent / "fuzz_regressions.json").read_text())


if REGRESSIONS:  # minimal graphs on which the surgery once failed, kept forever
    @pytest.mark.parametrize("case", REGRESSIONS, ids=[f"seed{c['seed']}" for c in REGRESSIONS])
    def test_fuzz_regression(case):
        check(case["spec"], case["drop_seed"])


def test_a_short_fuzz_run_finds_nothing():
    result = fuzz(range(1000, 1040))
    assert result.graphs == 40 and not result.failures, result.failures[:1]
    assert result.prunable_groups > 2 * result.frozen_groups, "the fuzzer must mostly exercise prunable groups"


def test_minimise_keeps_only_what_the_failure_needs():
    spec = {"in_channels": 3, "size": 8, "stem": 8, "head": "gap_gemm", "classes": 3, "seed": 0,
            "blocks": [{"kind": k, "c": 12, "act": "GELU", "bn": True, "k": 3}
                       for k in ("conv", "se", "csp", "pool", "residual")]}
    needs_csp = lambda s, d: any(b["kind"] == "csp" for b in s["blocks"])  # noqa: E731
    small = minimise(spec, 0, needs_csp)
    assert [b["kind"] for b in small["blocks"]] == ["csp"]
    assert small["blocks"][0]["c"] == 2 and small["blocks"][0]["act"] == "none"
