"""Training placement: device checks in one sentence, GPU-resident batches, bfloat16 autocast
and channels-last (exercised on the CPU, where both work too), the model handed back where
and as it was. The GPU test runs in the gpu tier (tools/gpu_check.sh)."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from deploypipe.cli import main
from deploypipe.data import load_dataset
from deploypipe.errors import DeviceError, InputError
from deploypipe.models import create_model
from deploypipe.train import TrainConfig, evaluate, fit, start_epoch
from deploypipe.train.device import training_device
from deploypipe.train.loaders import ResidentBatches


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _tiny() -> nn.Module:
    torch.manual_seed(0)
    return create_model("test_resnet_cifar", num_classes=10, in_channels=1, input_size=8)


def test_resident_batches_cover_the_set_once_per_epoch_in_a_seeded_order():
    data = TensorDataset(torch.arange(21).float()[:, None], torch.arange(21))
    loader = ResidentBatches(data, 5, torch.device("cpu"), seed=1)
    first = torch.cat([y for _, y in loader])
    assert len(loader) == 4 and len(first) == 20  # a trailing batch of one is dropped
    assert len(set(first.tolist())) == 20 and first.tolist() != sorted(first.tolist())
    assert torch.equal(first, torch.cat([y for _, y in ResidentBatches(data, 5, torch.device("cpu"), seed=1)]))
    start_epoch(loader, 1)
    assert not torch.equal(first, torch.cat([y for _, y in loader]))
    for x, y in loader:  # inputs and labels stay paired
        assert torch.equal(x[:, 0].long(), y)


def test_amp_and_channels_last_train_and_hand_the_model_back(digits):
    model = _tiny()
    fit(model, digits, TrainConfig(epochs=3, batch_size=64, lr=0.1, progress=False, device="cpu", amp=True,
                                   channels_last=True))
    assert evaluate(model, digits.test) > 0.7
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous() and conv.weight.dtype == torch.float32
    assert conv.weight.device.type == "cpu"


@pytest.mark.parametrize("device, error, words", [
    ("tpu", InputError, "unknown training device"),
    ("mps", InputError, "not supported"),
])
def test_a_device_that_cannot_train_is_one_sentence(device, error, words):
    with pytest.raises(error, match=words):
        training_device(device, _tiny())


def test_cuda_without_a_gpu_is_one_sentence_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="needs a CUDA GPU"):
        training_device("cuda", _tiny())
    out = tmp_path / "m.pt"
    assert main(["train", "--arch", "test_resnet_cifar", "--dataset", "digits", "--epochs", "1",
                 "--device", "cuda", "-o", str(out)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs a CUDA GPU" in err[0] and "Traceback" not in err[0]
    assert not out.exists()


@pytest.mark.gpu
def test_training_on_the_gpu_with_amp_learns_and_returns_to_the_cpu(digits):
    model = _tiny()
    result = fit(model, digits, TrainConfig(epochs=3, batch_size=64, lr=0.1, progress=False, device="cuda",
                                            amp=True, channels_last=True))
    assert result.best_val_acc > 0.7 and evaluate(model, digits.test) > 0.7
    assert all(p.device.type == "cpu" for p in model.parameters())
