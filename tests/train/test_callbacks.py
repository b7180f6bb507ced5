"""Callbacks are called in order, see gradients after backward, can add a loss, stop
training, and replace modules with a rebuilt optimizer."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from deploypipe.data import load_dataset
from deploypipe.models import create_model
from deploypipe.train import Callback, TrainConfig, fit


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits", limit=48)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return create_model("test_resnet_cifar", num_classes=10, in_channels=1, input_size=8)


class Recorder(Callback):
    def __init__(self):
        self.calls: list[str] = []

    def on_train_begin(self, state):
        self.calls.append("train_begin")

    def on_epoch_begin(self, state):
        self.calls.append("epoch_begin")

    def on_batch_begin(self, state):
        self.calls.append("batch_begin")

    def extra_loss(self, state):
        self.calls.append("extra_loss")

    def on_after_backward(self, state):
        assert all(p.grad is not None for p in state.model.parameters())
        self.calls.append("after_backward")

    def on_step_end(self, state):
        self.calls.append(f"step_end{state.step}")

    def on_epoch_end(self, state):
        self.calls.append(f"epoch_end{state.epoch}")

    def on_train_end(self, state):
        self.calls.append("train_end")


def test_hooks_fire_in_order(data):
    rec = Recorder()
    fit(_model(), data, TrainConfig(epochs=2, batch_size=24, progress=False), callbacks=[rec])
    step = ["batch_begin", "extra_loss", "after_backward"]
    assert rec.calls == (["train_begin", "epoch_begin", *step, "step_end1", *step, "step_end2", "epoch_end0",
                          "epoch_begin", *step, "step_end3", *step, "step_end4", "epoch_end1", "train_end"])


def test_two_callbacks_are_called_in_the_order_given(data):
    order = []

    class Named(Callback):
        def __init__(self, name):
            self.name = name

        def on_step_end(self, state):
            order.append(self.name)

    fit(_model(), data, TrainConfig(epochs=1, batch_size=48, progress=False), callbacks=[Named("a"), Named("b")])
    assert order == ["a", "b"]


def test_stop_ends_training_after_the_current_step(data):
    class StopAt(Callback):
        def on_step_end(self, state):
            if state.step == 3:
                state.stop = True

    result = fit(_model(), data, TrainConfig(epochs=5, batch_size=8, progress=False), callbacks=[StopAt()])
    assert result.steps == 3 and len(result.history) == 1 and result.stopped_early


def test_extra_loss_is_added_and_changes_training(data):
    class Penalty(Callback):
        def extra_loss(self, state):
            self.task = float(state.loss.detach())
            return state.model.fc.weight.pow(2).sum()

        def on_after_backward(self, state):
            self.total = float(state.loss.detach())

    pen = Penalty()
    penalised, plain = _model(), _model()
    config = TrainConfig(epochs=1, batch_size=24, lr=0.1, progress=False)
    fit(penalised, data, config, callbacks=[pen])
    fit(plain, data, config)
    assert pen.total > pen.task + 1.0
    assert penalised.fc.weight.norm() < plain.fc.weight.norm()


def test_rebuild_optimizer_after_replacing_a_module_keeps_the_schedule(data):
    class SwapHead(Callback):
        def on_step_end(self, state):
            if state.step == 2:
                old = state.model.fc
                state.model.fc = nn.Linear(old.in_features, old.out_features)
                self.new = state.model.fc
                self.initial = self.new.weight.detach().clone()
                state.rebuild_optimizer()
                self.lr = state.optimizer.param_groups[0]["lr"]
                self.expected = state.scheduler.lr_at(state.step)
                self.kept = sum(1 for p in state.optimizer.state if p is not old.weight)

    swap = SwapHead()
    config = TrainConfig(epochs=2, batch_size=12, warmup_epochs=1, progress=False)
    fit(_model(), data, config, callbacks=[swap])
    assert swap.lr == pytest.approx(swap.expected) and swap.lr > 0
    assert swap.kept > 0  # momentum of untouched parameters survives
    assert not torch.equal(swap.new.weight, swap.initial)  # the new module is trained
