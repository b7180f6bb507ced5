"""Data criteria are what their names say, per image: Taylor sums each image's |dL_n/dm_c|
(the signed sum over images cancels near a minimum), Fisher sums (dL_n/dm_c)^2."""
from __future__ import annotations

import numpy as np
import torch

from deploypipe.models import create_model
from deploypipe.prune.importance import ImportanceContext, create_importance
from deploypipe.prune.torch_groups import ConsumerMasks, TorchPruner


def setup():
    torch.manual_seed(0)
    pruner = TorchPruner(create_model("test_resnet_cifar", num_classes=5, input_size=8).eval(), (1, 3, 8, 8))
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(6, 3, 8, 8, generator=g), torch.randint(0, 5, (6,), generator=g)) for _ in range(2)]
    return pruner, batches


def per_image_gradients(pruner, batches) -> dict[int, np.ndarray]:
    """(images, channels) of dL_n/dm_c per prunable group, one image at a time."""
    loss = torch.nn.CrossEntropyLoss(reduction="sum")
    rows: dict[int, list[np.ndarray]] = {g.id: [] for g in pruner.prunable}
    with ConsumerMasks(pruner, per_sample=True) as masks:
        for x, y in batches:
            for i in range(len(x)):
                masks.begin(1)
                pruner.model.zero_grad(set_to_none=True)
                loss(pruner.model(x[i:i + 1]), y[i:i + 1]).backward()
                for gid, grad in masks.grads().items():
                    rows[gid].append(grad.detach().double().numpy()[0])
    return {gid: np.stack(r) for gid, r in rows.items()}


def test_taylor_and_fisher_sum_over_images():
    pruner, batches = setup()
    grads = per_image_gradients(pruner, batches)
    taylor = create_importance("taylor").scores(pruner, ImportanceContext(batches=batches))
    fisher = create_importance("fisher").scores(pruner, ImportanceContext(batches=batches))
    for gid, g in grads.items():
        assert np.allclose(taylor[gid], np.abs(g).sum(0), rtol=1e-4, atol=1e-7)
        assert np.allclose(fisher[gid], (g ** 2).sum(0), rtol=1e-4, atol=1e-9)
    # the per-image form is not the absolute value of the signed sum, which cancels
    assert any(not np.allclose(taylor[gid], np.abs(g.sum(0)), rtol=1e-3) for gid, g in grads.items())
