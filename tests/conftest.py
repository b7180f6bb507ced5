"""Shared fixtures and markers: `slow` tests run with ``-m slow``; `gpu` tests skip
with a reason on machines without an NVIDIA GPU."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")


def _gpu_reason() -> str | None:
    try:
        import torch
    except Exception:  # pragma: no cover
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "no CUDA GPU on this machine (the gpu tier runs with tools/gpu_check.sh on a GPU host)"
    return None


def pytest_collection_modifyitems(config, items):
    reason = None
    checked = False
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            if not checked:
                reason, checked = _gpu_reason(), True
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(autouse=True)
def _torch_determinism():
    try:
        import torch
    except Exception:  # pragma: no cover
        yield
        return
    torch.manual_seed(0)
    torch.set_num_threads(1)  # tiny models are overhead-bound; OpenMP spin-waits hurt on shared cores
    yield
