"""fit: learns digits, is deterministic per seed, restores train/eval flags, handles a teacher."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from deploypipe.data import load_dataset
from deploypipe.errors import DeploypipeError, InputError
from deploypipe.models import create_model
from deploypipe.train import Callback, DistillConfig, TrainConfig, evaluate, fit


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def small_digits():
    return load_dataset("digits", limit=64)


def _tiny(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return create_model("test_resnet_cifar", num_classes=10, in_channels=1, input_size=8)


def test_training_on_digits_beats_chance_by_far(digits):
    model = _tiny()
    before = evaluate(model, digits.test)
    result = fit(model, digits, TrainConfig(epochs=4, batch_size=64, lr=0.1, progress=False))
    after = evaluate(model, digits.test)
    assert after > 0.8 and after > before + 0.5
    assert len(result.history) == 4 and result.steps == 4 * 20
    assert result.best_val_acc == max(r.val_acc for r in result.history) > 0.8
    assert [r.epoch for r in result.history] == [1, 2, 3, 4]
    assert result.history[-1].lr < result.history[0].lr  # cosine decays
    assert not result.stopped_early


def test_same_seed_same_weights(small_digits):
    config = TrainConfig(epochs=1, batch_size=16, progress=False, seed=3)
    a, b = _tiny(), _tiny()
    fit(a, small_digits, config)
    fit(b, small_digits, config)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    c = _tiny()
    fit(c, small_digits, TrainConfig(epochs=1, batch_size=16, progress=False, seed=4))
    assert not torch.equal(a.fc.weight, c.fc.weight)


def test_modes_are_restored_per_module(small_digits):
    model = _tiny()
    model.eval()
    fit(model, small_digits, TrainConfig(epochs=1, batch_size=32, progress=False))
    assert not any(m.training for m in model.modules())
    model.train()
    model.bn1.eval()  # a frozen BatchNorm stays frozen
    fit(model, small_digits, TrainConfig(epochs=1, batch_size=32, progress=False))
    assert model.training and not model.bn1.training and model.layer1.training


class _Spy(Callback):
    def __init__(self, teacher):
        self.teacher, self.seen = teacher, []

    def extra_loss(self, state):
        self.seen.append((self.teacher.training, state.loss.detach().clone(),
                          state.outputs.detach().clone(), state.inputs.clone(), state.targets.clone()))
        return None


def test_teacher_runs_in_eval_without_grad_and_loss_is_distillation(small_digits):
    teacher, student = _tiny(1), _tiny(2)
    teacher.train()
    before = copy.deepcopy(teacher.state_dict())
    spy = _Spy(teacher)
    distill = DistillConfig(tau=2.0, alpha=0.7)
    fit(student, small_digits, TrainConfig(epochs=1, batch_size=32, progress=False, distill=distill),
        teacher=teacher, callbacks=[spy])
    assert teacher.training  # restored
    assert all(p.grad is None for p in teacher.parameters())
    assert all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())  # BN stats too
    was_training, loss, outputs, inputs, targets = spy.seen[0]
    assert not was_training
    teacher.eval()
    with torch.no_grad():
        t = teacher(inputs)
    p_t = torch.softmax(t / 2.0, 1)
    kl = (p_t * (torch.log_softmax(t / 2.0, 1) - torch.log_softmax(outputs / 2.0, 1))).sum(1).mean()
    ce = nn.functional.cross_entropy(outputs, targets)
    assert torch.allclose(loss, 0.7 * 4.0 * kl + 0.3 * ce, atol=1e-5)


def test_distill_without_teacher_is_refused(small_digits):
    with pytest.raises(InputError, match="no teacher"):
        fit(_tiny(), small_digits, TrainConfig(epochs=1, progress=False, distill=DistillConfig()))


def test_diverging_loss_is_a_clear_error(small_digits):
    class NaN(Callback):
        def extra_loss(self, state):
            return torch.tensor(float("nan"))

    with pytest.raises(DeploypipeError, match="training diverged.*lower the learning rate"):
        fit(_tiny(), small_digits, TrainConfig(epochs=1, progress=False), callbacks=[NaN()])


def test_max_steps_per_epoch_caps_steps(small_digits):
    result = fit(_tiny(), small_digits, TrainConfig(epochs=2, batch_size=8, max_steps_per_epoch=3, progress=False))
    assert result.steps == 6 and len(result.history) == 2


@pytest.mark.parametrize("kwargs, match", [
    ({"epochs": 0}, "epochs must be at least 1"),
    ({"epochs": 1, "lr": 0}, "learning rate must be positive"),
    ({"epochs": 1, "schedule": "linear"}, "unknown learning-rate schedule 'linear'"),
    ({"epochs": 2, "warmup_epochs": 3}, "warm-up epochs"),
    ({"epochs": 1, "momentum": 1.0}, "momentum"),
    ({"epochs": 1, "label_smoothing": 1.0}, "label smoothing"),
])
def test_config_validation(kwargs, match):
    with pytest.raises(InputError, match=match):
        TrainConfig(**kwargs)


def test_distill_config_validation():
    with pytest.raises(InputError, match="alpha"):
        DistillConfig(alpha=1.5)
    with pytest.raises(InputError, match="tau"):
        DistillConfig(tau=0)
