"""The two oracles on every zoo family: torch-pruned == ONNX-shrunk original, and
consumer masks == physical removal; the pruned checkpoint reloads to the same outputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from deploypipe.checkpoint import load_model, save_checkpoint
from deploypipe.graph import shrink
from deploypipe.graph.oracle import run_onnx
from deploypipe.models import create_model, list_models
from deploypipe.prune.plan import plan_drop
from deploypipe.prune.torch_groups import ConsumerMasks, TorchPruner

TEST_MODELS = [m for m in list_models(include_test=True) if m.startswith("test_")]


def _model(name: str, size: int = 16) -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, input_size=size)
    with torch.no_grad():  # non-trivial BatchNorm statistics so every parameter matters
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return model.eval()


@pytest.mark.parametrize("name", TEST_MODELS + ["resnet20", "mobilenet_v2"])
def test_torch_pruned_equals_onnx_shrunk_and_masks_equal_removal(name, tmp_path):
    model = _model(name)
    pruner = TorchPruner(model, (1, 3, 16, 16))
    assert pruner.prunable and not pruner.torch_reasons, "every member must map to a torch parameter"
    drop = plan_drop(pruner.analysis, ratio=0.5, importance="random", seed=1)
    reference = shrink(pruner.analysis, drop)
    x = torch.randn(3, 3, 16, 16)

    with ConsumerMasks(pruner) as masks:
        masks.drop(drop)
        masks.begin()
        with torch.no_grad():
            masked = model(x).numpy()
    pruner.apply(drop)
    with torch.no_grad():
        pruned = model(x).numpy()
    onnx_out = run_onnx(reference, {"input": x.numpy()})[0]
    scale = np.abs(onnx_out).max()
    assert np.abs(pruned - onnx_out).max() <= 1e-5 * max(1.0, scale)
    assert np.abs(masked - pruned).max() <= 1e-5 * max(1.0, scale)
    assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in _model(name).parameters())

    path = tmp_path / "pruned.pt"
    save_checkpoint(path, model)
    torch.load(path, weights_only=True)
    reloaded = load_model(path).model
    with torch.no_grad():
        assert np.allclose(reloaded(x).numpy(), pruned, atol=1e-6)


def test_per_sample_mask_gradients_match_the_loss_change_of_removal():
    """dL/dm_c at m=1 is the first-order loss change of removing channel c; for a channel
    whose removal changes the loss a little, a finite difference agrees with it."""
    model = _model("test_resnet_cifar", size=8).double()
    pruner = TorchPruner(model.float(), (1, 3, 8, 8))
    model = pruner.model.double()
    x, y = torch.randn(4, 3, 8, 8, dtype=torch.float64), torch.tensor([0, 1, 2, 3])
    group = pruner.prunable[0]
    loss_fn = torch.nn.CrossEntropyLoss(reduction="sum")
    with ConsumerMasks(pruner, [group], per_sample=True) as masks:
        masks.begin(4)
        loss_fn(model(x), y).backward()
        grad = masks.grads()[group.id].sum(0).numpy()
        eps = 1e-6
        for c in range(group.width):
            values = torch.ones(group.width, dtype=torch.float64)
            values[c] = 1 - eps
            masks.set(group.id, values)
            masks.begin(4)
            with torch.no_grad():
                changed = loss_fn(model(x), y).item()
            masks.set(group.id, torch.ones(group.width))
            masks.begin(4)
            with torch.no_grad():
                base = loss_fn(model(x), y).item()
            assert (base - changed) / eps == pytest.approx(grad[c], rel=1e-3, abs=1e-6)
