"""Property: for any CNN graph and any kept channels, the shrunk graph equals the original
with the dropped channels made dead (the oracle), and passes checker and shape inference."""
from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deploypipe.graph import analyse, shrink, verify_shrink
from deploypipe.testing.graphs import ACTS, BLOCKS, HEADS, build_cnn

block = st.fixed_dictionaries({
    "kind": st.sampled_from(BLOCKS),
    "c": st.sampled_from([2, 4, 6, 8, 12]),
    "act": st.sampled_from(ACTS),
    "bn": st.booleans(),
    "k": st.sampled_from([1, 3]),
})
specs = st.fixed_dictionaries({
    "in_channels": st.sampled_from([1, 3]),
    "size": st.sampled_from([4, 6, 8]),
    "stem": st.sampled_from([2, 4, 8]),
    "blocks": st.lists(block, min_size=1, max_size=6),
    "head": st.sampled_from(HEADS),
    "classes": st.sampled_from([2, 5]),
    "seed": st.integers(0, 2**16),
})

EXAMPLES = int(os.environ.get("DEPLOYPIPE_FUZZ_EXAMPLES", "60"))
# the default run draws the same 60 graphs every time (a CI gate must not pass or fail by the
# draw); DEPLOYPIPE_FUZZ_EXAMPLES=N explores N new ones
FRESH = "DEPLOYPIPE_FUZZ_EXAMPLES" in os.environ


def random_drop(analysis, rng: np.random.Generator) -> dict[int, np.ndarray]:
    drop = {}
    for g in analysis.prunable:
        k = int(rng.integers(0, g.width))  # keep at least one
        if k:
            drop[g.id] = rng.choice(g.width, size=k, replace=False)
    return drop


def check_spec(spec: dict, drop_seed: int) -> None:
    model = build_cnn(spec)
    analysis = analyse(model)
    drop = random_drop(analysis, np.random.default_rng(drop_seed))
    small = shrink(analysis, drop)
    onnx.checker.check_model(small, full_check=True)
    report = verify_shrink(analysis, small, drop, trials=1)
    assert report.passed, f"{report.sentence()} for spec {spec} and drop {drop}"
    # the cost model predicts the MACs counted on the shrunk graph exactly
    widths = analysis.widths() - np.array([len(drop.get(g.id, ())) for g in analysis.groups])
    assert analysis.cost.macs(widths) == pytest.approx(analyse(small, normalized=True).macs, rel=1e-9)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=not FRESH,
          database=None if not FRESH else settings.default.database)
@given(spec=specs, drop_seed=st.integers(0, 2**16))
def test_random_graphs_shrink_exactly(spec, drop_seed):
    check_spec(spec, drop_seed)

