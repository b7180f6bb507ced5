"""Schedule values, the distillation loss by hand, evaluate and loaders."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from deploypipe.errors import InputError
from deploypipe.train import DistillConfig, LRSchedule, distillation_loss, evaluate, make_loader, predict_logits


def test_cosine_with_warmup():
    s = LRSchedule(base_lr=0.1, total_steps=110, warmup_steps=10, kind="cosine")
    assert s.lr_at(0) == pytest.approx(0.01) and s.lr_at(9) == pytest.approx(0.1)
    assert s.lr_at(10) == pytest.approx(0.1)
    assert s.lr_at(60) == pytest.approx(0.05)
    assert s.lr_at(110) == pytest.approx(0.0, abs=1e-12)


def test_step_and_constant():
    s = LRSchedule(base_lr=1.0, total_steps=100, kind="step")
    assert [s.lr_at(i) for i in (0, 49, 50, 74, 75, 99)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    assert LRSchedule(0.3, 10, kind="constant").lr_at(7) == 0.3


def test_distillation_loss_by_hand():
    torch.manual_seed(0)
    s, t = torch.randn(5, 4), torch.randn(5, 4)
    y = torch.tensor([0, 1, 2, 3, 1])
    tau, alpha = 3.0, 0.6
    got = distillation_loss(s, t, y, DistillConfig(tau=tau, alpha=alpha))
    kl = 0.0
    for i in range(5):
        p = [math.exp(v / tau) for v in t[i].tolist()]
        q = [math.exp(v / tau) for v in s[i].tolist()]
        p = [v / sum(p) for v in p]
        q = [v / sum(q) for v in q]
        kl += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
    ce = sum(-math.log(math.exp(s[i, y[i]].item()) / s[i].exp().sum().item()) for i in range(5)) / 5
    assert got.item() == pytest.approx(alpha * tau**2 * kl / 5 + (1 - alpha) * ce, rel=1e-5)


def test_distillation_of_identical_logits_is_pure_cross_entropy():
    s = torch.randn(4, 3)
    y = torch.tensor([0, 1, 2, 0])
    got = distillation_loss(s, s.clone(), y, DistillConfig(alpha=0.25))
    assert got.item() == pytest.approx(0.75 * nn.functional.cross_entropy(s, y).item(), rel=1e-5)


class _Constant(nn.Module):
    """Always predicts class 1; has a BatchNorm so the eval flag matters."""

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm1d(3)

    def forward(self, x):
        assert not self.training
        return torch.tensor([0.0, 1.0, 0.0]).expand(len(x), 3) + 0 * self.bn(x[:, :3])


def test_evaluate_accuracy_and_mode():
    ds = TensorDataset(torch.randn(10, 3), torch.tensor([1, 1, 1, 0, 2, 1, 0, 0, 1, 2]))
    model = _Constant().train()
    assert evaluate(model, ds, batch_size=3) == pytest.approx(0.5)
    assert model.training
    logits, labels = predict_logits(model, ds, batch_size=4)
    assert logits.shape == (10, 3) and torch.equal(labels, ds.tensors[1])


def test_evaluate_empty_dataset():
    with pytest.raises(InputError, match="empty dataset"):
        evaluate(_Constant(), TensorDataset(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)))


def test_loader_shuffles_by_seed_and_drops_a_lone_last_batch():
    ds = TensorDataset(torch.arange(9), torch.zeros(9))
    order = lambda seed: torch.cat([b[0] for b in make_loader(ds, 4, shuffle=True, seed=seed)])  # noqa: E731
    assert torch.equal(order(1), order(1)) and not torch.equal(order(1), order(2))
    assert len(order(1)) == 8  # 9 = 4 + 4 + 1: the batch of one is dropped
    assert len(list(make_loader(ds, 4, shuffle=False))) == 3
