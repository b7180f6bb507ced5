"""A ShuffleNet unit in PyTorch: grouped 1x1 convs that keep their group count, a channel
shuffle between them. Torch pruning, consumer masks, the ONNX surgery and rebuilding the
dense model at the saved widths must all agree."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from deploypipe.graph import shrink
from deploypipe.graph.oracle import run_onnx
from deploypipe.models.resize import resize_to_state_dict
from deploypipe.prune.plan import plan_drop
from deploypipe.prune.torch_groups import ConsumerMasks, TorchPruner


class ShuffleUnit(nn.Module):
    def __init__(self, groups: int = 2):
        super().__init__()
        self.groups = groups
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.reduce = nn.Sequential(nn.Conv2d(8, 24, 1, groups=groups, bias=False), nn.BatchNorm2d(24), nn.ReLU())
        self.depthwise = nn.Sequential(nn.Conv2d(24, 24, 3, padding=1, groups=24, bias=False), nn.BatchNorm2d(24))
        self.expand = nn.Sequential(nn.Conv2d(24, 8, 1, groups=groups, bias=False), nn.BatchNorm2d(8))
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        x = self.stem(x)
        y = self.reduce(x)
        n, c, h, w = y.shape
        y = y.view(n, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(n, c, h, w)
        y = self.expand(self.depthwise(y))
        return self.head(torch.relu(x + y).mean(dim=(2, 3)))


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = ShuffleUnit()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return model.eval()


def test_grouped_convs_around_a_shuffle_prune_in_torch_as_in_onnx():
    model = _model()
    pruner = TorchPruner(model, (1, 3, 8, 8))
    (mid,) = [g for g in pruner.prunable if any(m.tensor == "reduce.0.weight" and m.role == "producer"
                                                 for m in g.members)]
    assert mid.width == 6  # 12 positions in each of 2 groups; the shuffle pairs them across groups
    drop = plan_drop(pruner.analysis, ratio=0.5, importance="random", seed=1)
    assert mid.id in drop
    reference = shrink(pruner.analysis, drop)
    x = torch.randn(2, 3, 8, 8)
    with ConsumerMasks(pruner) as masks:
        masks.drop(drop)
        masks.begin()
        with torch.no_grad():
            masked = model(x).numpy()
    pruner.apply(drop)
    assert model.reduce[0].groups == 2 and model.reduce[0].out_channels < 24
    with torch.no_grad():
        pruned = model(x).numpy()
    onnx_out = run_onnx(reference, {"input": x.numpy()})[0]
    assert np.abs(pruned - onnx_out).max() <= 1e-5 * max(1.0, np.abs(onnx_out).max())
    assert np.abs(masked - pruned).max() <= 1e-5 * max(1.0, np.abs(onnx_out).max())

    fresh = _model()
    resize_to_state_dict(fresh, model.state_dict())
    fresh.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert np.abs(fresh.eval()(x).numpy() - pruned).max() <= 1e-6
