"""Fakes for the hardware-aware tests: a latency oracle that counts what it times, a cache
folder per test, and a small exported model."""
from __future__ import annotations

import pytest

from deploypipe.graph import analyse


class MacsTimer:
    """Latency = ``overhead_ms + scale * MACs / 1e6`` (ms), counting every model it times.
    MACs are bilinear in the widths of the groups on a Conv's two sides, so the additive
    table model is genuinely wrong on it; ``fail_after`` raises KeyboardInterrupt then."""

    def __init__(self, scale: float = 1.0, overhead_ms: float = 0.0, fail_after: int | None = None):
        self.scale, self.overhead_ms, self.fail_after = scale, overhead_ms, fail_after
        self.calls = 0

    def time(self, models):
        out = []
        for m in models:
            if self.fail_after is not None and self.calls >= self.fail_after:
                raise KeyboardInterrupt
            self.calls += 1
            out.append(self.overhead_ms + self.scale * analyse(m).macs / 1e6)
        return out


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DEPLOYPIPE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def resnet_analysis():
    """test_resnet (BasicBlocks, a residual group per stage) exported and analysed."""
    from deploypipe.models import create_model
    from deploypipe.prune.torch_groups import export_model

    model = create_model("resnet20", in_channels=1, num_classes=10)
    return analyse(export_model(model, (1, 1, 8, 8)))
