"""BatchNorm recalibration: the running statistics become the pruned network's own, and
nothing else about the model changes."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import TensorDataset

from deploypipe.train.batchnorm import recalibrate_batchnorm


def net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5),
                         nn.Flatten(), nn.Linear(4 * 6 * 6, 2))


def data(n: int = 40) -> TensorDataset:
    g = torch.Generator().manual_seed(1)
    return TensorDataset(3 + 2 * torch.randn(n, 3, 6, 6, generator=g), torch.randint(0, 2, (n,), generator=g))


def stale(model: nn.Sequential) -> nn.BatchNorm2d:
    bn = model[1]
    bn.running_mean.fill_(50.0)
    bn.running_var.fill_(1e4)
    return bn


def test_statistics_are_the_average_over_the_batches_seen():
    model, ds = net().eval(), data(40)
    bn = stale(model)
    assert recalibrate_batchnorm(model, ds, batches=10, batch_size=10, seed=0) == 40  # the dataset ran out
    with torch.no_grad():
        feats = model[0](ds.tensors[0])
    # equal batches: the average of the batch means is the mean, whatever the shuffle
    assert torch.allclose(bn.running_mean, feats.mean(dim=(0, 2, 3)), atol=1e-4)
    assert bn.momentum == 0.1 and int(bn.num_batches_tracked) == 4
    recalibrate_batchnorm(model, ds, batches=1, batch_size=40)  # one batch: its unbiased variance
    assert torch.allclose(bn.running_var, feats.var(dim=(0, 2, 3), unbiased=True), rtol=1e-4)


def test_only_batchnorm_trains_and_weights_and_modes_stay():
    model, ds = net(), data()
    model.eval()
    model[5].train()  # a submodule the caller left in train mode keeps its flag
    stale(model)
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "tracked" not in k}
    seen = []
    model[3].register_forward_hook(lambda m, i, o: seen.append(m.training))
    recalibrate_batchnorm(model, ds, batches=2, batch_size=8)
    assert seen == [False, False]  # dropout in eval while the statistics are taken
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())
    assert [m.training for m in model] == [False, False, False, False, False, True]


def test_recalibration_repairs_a_stale_network():
    model, ds = net().eval(), data(64)
    x = ds.tensors[0]
    with torch.no_grad():
        reference = model[1].train()(model[0](x)).clone()  # batch statistics: what the layer should output
    model.eval()
    stale(model)
    with torch.no_grad():
        before = (model[1](model[0](x)) - reference).abs().max()
        recalibrate_batchnorm(model, ds, batches=8, batch_size=64)
        after = (model[1](model[0](x)) - reference).abs().max()
    assert before > 0.5 and after < 1e-3


def test_nothing_to_do():
    model, ds = net().eval(), data()
    bn = stale(model)
    assert recalibrate_batchnorm(model, ds, batches=0) == 0
    assert float(bn.running_mean[0]) == 50.0
    assert recalibrate_batchnorm(nn.Linear(3, 2), TensorDataset(torch.randn(4, 3)), batches=3) == 0
