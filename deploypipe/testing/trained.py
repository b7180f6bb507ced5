"""Small trained models for tests that need real accuracy, trained the same way each time."""
from __future__ import annotations

from pathlib import Path


def digits_resnet20_onnx(data, path: Path, *, epochs: int = 6) -> Path:
    """resnet20 trained ``epochs`` on the ``digits`` splits ``data`` (one thread, seed 0: the
    same weights every time, whatever the caller's torch threads), exported to ``path``."""
    import torch

    from ..export import export_onnx
    from ..models import create_model
    from ..train import TrainConfig, fit

    threads = torch.get_num_threads()  # module fixtures run before conftest's one-thread setting
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = create_model("resnet20", num_classes=10, in_channels=1, input_size=8)
            fit(model, data, TrainConfig(epochs=epochs, batch_size=64, lr=0.1, seed=0, progress=False))
    finally:
        torch.set_num_threads(threads)
    export_onnx(model.eval(), path, input_shape=(1, 1, 8, 8))
    return path
