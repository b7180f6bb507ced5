"""The pruning phase of the methods that prune while they train: the loss they score and
train with (the task loss unless loss=distill, whatever --distill says), schedules planned
in epochs of the data given and announced before they start, and progress after every
epoch."""
from __future__ import annotations

import copy
import logging
import math

import pytest
import torch

import deploypipe.train as train_module
from deploypipe.data import load_dataset
from deploypipe.errors import InputError
from deploypipe.models import create_model
from deploypipe.prune.budget import Budget
from deploypipe.prune.methods import PruneContext, PruneRequest, create_method
from deploypipe.prune.torch_groups import TorchPruner
from deploypipe.train import DistillConfig, TrainConfig

IN_TRAINING = ("group_fisher", "increg", "greg1", "greg2")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0, limit=200)


def _ctx(data, *, teacher: bool = True, budget: Budget = Budget("ratio", 0.4)) -> PruneContext:
    torch.manual_seed(0)
    model = create_model("test_resnet_cifar", num_classes=10, in_channels=1, input_size=8)
    config = TrainConfig(epochs=1, batch_size=32, lr=0.01, progress=False,
                         distill=DistillConfig() if teacher else None)
    return PruneContext(TorchPruner(model, (1, 1, 8, 8)), PruneRequest(budget=budget), data=data,
                        train_config=config, teacher=copy.deepcopy(model).eval() if teacher else None)


class _Stop(Exception):
    pass


def _captured_fit(monkeypatch) -> dict:
    """Replace ``fit`` by a spy that records its arguments and stops the method there."""
    seen: dict = {}

    def spy(model, data, config, *, teacher=None, callbacks=()):
        seen.update(config=config, teacher=teacher, callbacks=list(callbacks))
        raise _Stop

    monkeypatch.setattr(train_module, "fit", spy)
    return seen


# -- item 3: the scoring loss ---------------------------------------------------------------------
@pytest.mark.parametrize("method", IN_TRAINING)
def test_pruning_phase_uses_the_task_loss_even_with_distill(monkeypatch, digits, method):
    """--distill (a teacher in the context) configures fine-tuning; the pruning phase
    trains and scores without it unless loss=distill."""
    ctx = _ctx(digits)
    seen = _captured_fit(monkeypatch)
    with pytest.raises(_Stop):
        create_method(method).run(ctx)
    assert seen["teacher"] is None and seen["config"].distill is None
    assert ctx.losses["prune_training"].startswith("task loss (cross-entropy)")
    ctx = _ctx(digits)
    with pytest.raises(_Stop):
        create_method(method, {"loss": "distill"}).run(ctx)
    assert seen["teacher"] is ctx.teacher and seen["config"].distill is not None
    assert ctx.losses["prune_training"].startswith("distillation from the dense model")


def test_distill_loss_without_a_teacher_is_refused_in_one_sentence(digits):
    with pytest.raises(InputError, match="only --distill provides"):
        create_method("group_fisher", {"loss": "distill"}).run(_ctx(digits, teacher=False))


def test_group_fisher_scores_are_those_of_the_task_loss(monkeypatch, digits):
    """What the Fisher callback accumulates comes from the loss the loop computes: with the
    teacher withheld it is the cross-entropy's, not the distillation loss's."""
    ctx = _ctx(digits)
    seen = _captured_fit(monkeypatch)
    with pytest.raises(_Stop):
        create_method("group_fisher").run(ctx)
    assert ctx.losses["scoring"] == ctx.losses["prune_training"] == "task loss (cross-entropy)"
    assert seen["teacher"] is None


# -- item 4: schedules in epochs of the data, announced, with progress ---------------------------
@pytest.mark.parametrize("method", IN_TRAINING)
def test_fit_schedule_is_planned_in_epochs_of_the_data_and_announced(monkeypatch, digits, caplog, method):
    ctx = _ctx(digits)
    seen = _captured_fit(monkeypatch)
    with caplog.at_level(logging.INFO, logger="deploypipe"), pytest.raises(_Stop):
        create_method(method, {"prune_epochs": 3}).run(ctx)
    per_epoch = math.ceil(len(digits.train) / 32)
    announced = [r.getMessage() for r in caplog.records if "fit schedule" in r.getMessage()]
    assert len(announced) == 1 and f"epochs of {len(digits.train):,} images at batch 32" in announced[0]
    planned = int(announced[0].split("about ")[-1].split(" steps")[0].replace(",", ""))
    assert planned <= 0.9 * 3 * per_epoch
    assert seen["config"].epochs <= 3 + 1  # the plan and one epoch of slack, not 10^4 iterations' worth


def test_fit_schedule_scales_the_papers_increments_to_the_phase(monkeypatch, digits):
    """IncReg: A = target x 6 / updates; GReg-2: the uniform, growing and stabilising
    stages take 10%, 50% and 40% of the phase, one update per iteration."""
    from deploypipe.prune.methods.increg import INCREG_SPAN

    budget = math.floor(0.9 * 5 * math.ceil(len(digits.train) / 32))
    _captured_fit(monkeypatch)
    increg = create_method("increg", {"prune_epochs": 5})
    with pytest.raises(_Stop):
        increg.run(_ctx(digits))
    assert increg.setting("A") == pytest.approx(2.5 * INCREG_SPAN / budget)
    greg = create_method("greg2", {"prune_epochs": 5, "stabilize": 7})
    with pytest.raises(_Stop):
        greg.run(_ctx(digits))
    assert greg.setting("interval") == 1 and greg.setting("stabilize") == 7  # given explicitly: kept
    assert greg.setting("delta") == pytest.approx(1.0 / math.floor(0.5 * budget))
    assert greg.setting("pick_delta") == pytest.approx(1e-2 / math.floor(0.1 * budget))


def test_paper_schedule_keeps_the_papers_increments_and_warns_how_long_it_takes(monkeypatch, digits, caplog):
    """Group Fisher as published: one channel every 25 iterations; 40% of 56 channels is
    23 removals, 575 steps = 82 epochs of 200 images at batch 32; the loop may run them."""
    ctx = _ctx(digits)
    seen = _captured_fit(monkeypatch)
    with caplog.at_level(logging.INFO, logger="deploypipe"), pytest.raises(_Stop):
        create_method("group_fisher", {"schedule": "paper"}).run(ctx)
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "paper schedule" in text and "about 23 channels, 1 every 25 iterations" in text and "575 steps" in text
    assert seen["config"].epochs * math.ceil(len(digits.train) / 32) >= 575
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="deploypipe"), pytest.raises(_Stop):
        create_method("increg", {"schedule": "paper"}).run(_ctx(digits))
    assert any(r.levelno == logging.WARNING and "schedule=fit" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("method", ["group_fisher", "increg"])
def test_fit_schedule_reaches_the_budget_inside_the_phase_and_reports_progress(digits, caplog, method):
    ctx = _ctx(digits, teacher=False)
    with caplog.at_level(logging.INFO, logger="deploypipe"):
        create_method(method, {"prune_epochs": 4}).run(ctx)
    kept = sum(int(ctx.pruner.widths()[g.id]) for g in ctx.pruner.prunable)
    assert kept <= 0.6 * sum(int(ctx.dense_widths[g.id]) for g in ctx.pruner.prunable) + 2
    assert not ctx.rounds[-1]["forced"] and ctx.rounds[-1]["iteration"] <= 4 * math.ceil(len(digits.train) / 32)
    progress = [r.getMessage() for r in caplog.records if f"{method}: step " in r.getMessage()]
    assert progress and "channels removed" in progress[-1] and "s left" in progress[-1]
