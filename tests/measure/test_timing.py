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


class _Clock:
    """A perf_counter_ns that moves only when the timed function says (no scheduler noise)."""

    def __init__(self):
        self.ns = 0

    def __call__(self) -> int:
        return self.ns

    def spend(self, ms: float) -> None:
        self.ns += int(ms * 1e6)


@pytest.fixture()
def clock(monkeypatch):
    from deploypipe.measure import timing

    fake = _Clock()
    monkeypatch.setattr(timing, "time", type("FakeTime", (), {"perf_counter_ns": staticmethod(fake)}))
    return fake


def test_samples_are_milliseconds(clock):
    assert time_callable(lambda: clock.spend(2.0), warmup=0, iterations=3) == [2.0, 2.0, 2.0]


def test_min_seconds_extends_the_run(clock):
    samples = time_callable(lambda: clock.spend(1.0), warmup=0, iterations=1, min_seconds=0.03)
    assert samples == [1.0] * 30  # one asked for, run on until 30 ms were spent


def test_real_sleeps_are_timed_in_milliseconds():
    assert all(s >= 2.0 for s in time_callable(lambda: time.sleep(0.002), warmup=0, iterations=3))


def test_gc_state_restored():
    assert gc.isenabled()
    time_callable(lambda: None, warmup=0, iterations=2)
    assert gc.isenabled()


@pytest.mark.parametrize("warmup, iterations", [(-1, 5), (0, 0)])
def test_bad_counts(warmup, iterations):
    with pytest.raises(InputError):
        time_callable(lambda: None, warmup=warmup, iterations=iterations)
