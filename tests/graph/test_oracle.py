"""The oracle's comparison: the shared rule at the tensor's scale, non-finite results fail."""
from __future__ import annotations

import math

import numpy as np
import pytest

from deploypipe.graph.oracle import compare


def test_error_is_judged_at_the_tensor_scale():
    ref = [np.array([[100.0, 1e-6]])]
    report = compare(ref, [np.array([[100.0, 5e-3]])], atol=1e-4, rtol=1e-4, names=["y"])
    assert report.passed and report.max_rel == pytest.approx((5e-3 - 1e-6) / 100.0)
    assert report.to_dict().keys() == {"max_abs", "max_rel", "atol", "rtol", "passed"}


def test_a_failure_names_the_worst_element():
    report = compare([np.zeros((1, 3))], [np.array([[0.0, 0.0, 1.0]])], atol=1e-4, rtol=1e-4,
                     names=["y"])
    assert not report.passed and "worst element [0, 2] of trial 0: 1 against 0" in report.sentence()


def test_non_finite_results_fail():
    report = compare([np.ones(2)], [np.array([1.0, np.nan])], atol=1.0, rtol=1.0)
    assert not report.passed and math.isinf(report.max_abs)
