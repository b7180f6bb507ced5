"""Accuracy per pruning round: measured where the MACs moved, and always after the last round."""
from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn
from torch.utils.data import TensorDataset

from deploypipe.pipeline.build import ROUND_EVAL_IMAGES, ROUND_EVAL_POINTS, RoundAccuracy


def context(images: int = 50):
    x = torch.randn(images, 4)
    data = SimpleNamespace(test=TensorDataset(x, torch.randint(0, 3, (images,))))
    return SimpleNamespace(model=nn.Linear(4, 3).eval(), data=data, rounds=[])


def prune_rounds(ctx, hook, macs_after: list[float]) -> list[dict]:
    """Rounds as PruneContext.prune records them: appended, then handed to the hook."""
    for i, macs in enumerate(macs_after, 1):
        entry = {"round": i, "macs": macs}
        ctx.rounds.append(entry)
        hook(ctx, entry)
    hook.finish(ctx)
    return ctx.rounds


def test_small_rounds_are_measured_once_enough_macs_went():
    dense = 1600.0
    step = dense / ROUND_EVAL_POINTS  # 100
    ctx, hook = context(), RoundAccuracy(dense)
    # 40 rounds of 10 MACs each (cpli: one group per round): 400 MACs removed in all
    rounds = prune_rounds(ctx, hook, [dense - 10 * i for i in range(1, 41)])
    measured = [r["round"] for r in rounds if "accuracy" in r]
    assert measured == [10, 20, 30, 40]
    assert all(r["macs"] == dense - step * k for k, r in enumerate((r for r in rounds if "accuracy" in r), 1))
    assert all(0 <= r["accuracy"] <= 1 and r["accuracy_images"] == 50 for r in rounds if "accuracy" in r)


def test_the_last_round_is_measured_even_when_it_removed_little():
    ctx, hook = context(), RoundAccuracy(1600.0)
    rounds = prune_rounds(ctx, hook, [1000.0, 995.0])
    assert "accuracy" in rounds[0] and "accuracy" in rounds[1]


def test_one_shot_and_large_rounds_are_all_measured():
    ctx, hook = context(images=ROUND_EVAL_IMAGES + 10), RoundAccuracy(1600.0)
    rounds = prune_rounds(ctx, hook, [1200.0, 800.0, 400.0])
    assert all("accuracy" in r and r["accuracy_images"] == ROUND_EVAL_IMAGES for r in rounds)


def test_no_rounds_no_measurement():
    ctx, hook = context(), RoundAccuracy(1600.0)
    hook.finish(ctx)
    assert ctx.rounds == []
