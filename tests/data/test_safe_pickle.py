"""The numpy-only unpickler loads arrays and refuses any other global before calling it."""
from __future__ import annotations

import io
import os
import pickle

import numpy as np
import pytest

from deploypipe.data.safe_pickle import loads_numpy_pickle
from deploypipe.errors import InputError


class _Evil:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_numpy_arrays_round_trip_in_old_and_new_protocols():
    data = ((np.arange(6, dtype=np.float32).reshape(2, 3), np.array([1, 2], dtype=np.int64)),)
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        out = loads_numpy_pickle(pickle.dumps(data, protocol=protocol))
        assert np.array_equal(out[0][0], data[0][0]) and out[0][1].dtype == np.int64


def test_malicious_global_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps((np.zeros(2), _Evil(str(marker))), protocol=2)
    with pytest.raises(InputError, match=r"(posix|os|nt)\.system is not allowed"):
        loads_numpy_pickle(payload, "evil.pkl")
    assert not marker.exists()


def test_builtins_are_refused_too():
    payload = pickle.dumps(io.BytesIO, protocol=2)  # a harmless class, still not numpy
    with pytest.raises(InputError, match="not a plain numpy pickle"):
        loads_numpy_pickle(payload)


def test_truncated_pickle_is_an_input_error():
    payload = pickle.dumps(np.arange(100), protocol=2)
    with pytest.raises(InputError, match="truncated or corrupt"):
        loads_numpy_pickle(payload[:40])
