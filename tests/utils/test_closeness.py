"""The one comparison rule: ``|got - ref| <= atol + rtol * scale``, per element or per tensor."""
from __future__ import annotations

import math

import numpy as np
import pytest

from deploypipe.utils.closeness import compare_arrays

REF = [np.array([1.0, -2.0, 0.0]), np.array([4.0, 1.0, 1.0])]
GOT = [np.array([1.1, -2.0, 0.0]), np.array([4.0, 1.0, 1.3])]


def test_per_element_errors_and_the_tolerances_that_would_pass():
    c = compare_arrays(zip(REF, GOT), atol=0.01, rtol=0.01)
    assert not c.passed and c.max_abs == pytest.approx(0.3) and c.max_rel == pytest.approx(0.3)
    assert c.passing_atol == pytest.approx(0.3 - 0.01 * 1.0)
    assert c.passing_rtol == pytest.approx(0.3 - 0.01)
    assert (c.worst_pair, c.worst_index, c.worst_got) == (1, (2,), pytest.approx(1.3))
    assert compare_arrays(zip(REF, GOT), atol=c.passing_atol, rtol=0.01).passed
    assert compare_arrays(zip(REF, GOT), atol=0.01, rtol=c.passing_rtol).passed


def test_per_tensor_scale_is_the_largest_reference_value():
    c = compare_arrays(zip(REF, GOT), atol=0.01, rtol=0.01, per="tensor")
    assert c.max_rel == pytest.approx(0.3 / 4.0) and c.passing_atol == pytest.approx(0.26)
    near_zero = [(np.array([100.0, 1e-6]), np.array([100.0, 5e-3]))]
    assert compare_arrays(near_zero, atol=1e-4, rtol=1e-4, per="tensor").passed
    assert not compare_arrays(near_zero, atol=1e-4, rtol=1e-4).passed


def test_shapes_and_non_finite_values_fail_outright():
    shape = compare_arrays([(np.zeros((2, 3)), np.zeros((3, 2)))], atol=1.0, rtol=1.0)
    assert not shape.passed and math.isinf(shape.max_abs) and "differs" in shape.note
    for bad in (np.nan, np.inf):
        c = compare_arrays([(np.array([1.0, bad]), np.array([1.0, bad]))], atol=1.0, rtol=1.0)
        assert not c.passed and math.isinf(c.max_abs)


def test_nothing_compared_or_all_equal_passes_without_a_worst_element():
    assert compare_arrays([], atol=0.0, rtol=0.0).passed
    same = compare_arrays([(np.ones(4), np.ones(4))], atol=0.0, rtol=0.0)
    assert same.passed and same.max_abs == 0.0 and same.worst() == ""


def test_worst_element_names_the_output_and_trial():
    pairs = [(np.ones(2), np.ones(2)), (np.zeros(2), np.array([0.0, 0.5]))] * 2
    c = compare_arrays(pairs, atol=0.0, rtol=0.0)
    assert c.worst(2, ["logits", "aux"]) == "worst element [1] of output aux, trial 0: 0.5 against 0"
