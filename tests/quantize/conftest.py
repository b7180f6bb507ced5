"""A resnet20 trained on digits (about 5 s), exported to ONNX, and its data."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def digits():
    from deploypipe.data import load_dataset

    return load_dataset("digits", seed=0)


@pytest.fixture(scope="session")
def resnet20_onnx(tmp_path_factory, digits):
    """resnet20 trained 8 epochs on digits (99-100% test accuracy), as ONNX."""
    import torch

    from deploypipe.export import export_onnx
    from deploypipe.models import create_model
    from deploypipe.train import TrainConfig, fit

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = create_model("resnet20", num_classes=10, in_channels=1, input_size=8)
        fit(model, digits, TrainConfig(epochs=8, batch_size=64, lr=0.1, seed=0, progress=False))
    path = tmp_path_factory.mktemp("quantize") / "resnet20.onnx"
    export_onnx(model.eval(), path, input_shape=(1, 1, 8, 8))
    return path
