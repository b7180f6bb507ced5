from __future__ import annotations

import gc
import time

import pytest

from deploypipe.errors import InputError
from deploypipe.measure.timing import time_callable


def test_warmup_is_excluded():
    calls = []
    samples = time_callable(lambda: calls.append(1), warmup=3, iterations=5)
    assert len(calls) == 8
    assert len(samples) == 5
    assert all(s >= 0 for s in samples)


def test_samples_are_milliseconds():
    samples = time_callable(lambda: time.sleep(0.002), warmup=0, iterations=3)
    assert all(2.0 <= s < 500.0 for s in samples)


def test_min_seconds_extends_the_run():
    samples = time_callable(lambda: time.sleep(0.001), warmup=0, iterations=1, min_seconds=0.03)
    assert len(samples) > 1
    assert sum(samples) >= 30.0 - max(samples)


def test_gc_state_restored():
    assert gc.isenabled()
    time_callable(lambda: None, warmup=0, iterations=2)
    assert gc.isenabled()


@pytest.mark.parametrize("warmup, iterations", [(-1, 5), (0, 0)])
def test_bad_counts(warmup, iterations):
    with pytest.raises(InputError):
        time_callable(lambda: None, warmup=warmup, iterations=iterations)
