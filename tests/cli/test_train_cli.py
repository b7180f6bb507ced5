"""``deploypipe train`` in-process: a real run writes a loadable checkpoint; user mistakes
exit 2 with one line on stderr, no traceback, and no output file."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from deploypipe.checkpoint import FORMAT, load_model
from deploypipe.cli import main


def test_train_resnet20_on_digits_end_to_end(tmp_path, capsys):
    out = tmp_path / "sub" / "model.pt"
    code = main(["train", "--arch", "resnet20", "--dataset", "digits", "--epochs", "1", "--limit", "200",
                 "--batch-size", "64", "-o", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "epoch 1/1" in captured.err and "val " in captured.err
    assert "test accuracy" in captured.out and f"wrote {out.resolve()}" in captured.out
    raw = torch.load(out, weights_only=True)
    assert raw["format"] == FORMAT and raw["arch"] == "resnet20"
    meta = raw["metadata"]
    assert meta["input_shape"] == [1, 8, 8] and meta["dataset"] == "digits" and len(meta["history"]) == 1
    assert 0.0 <= meta["test_acc"] <= 1.0 and meta["train_config"]["epochs"] == 1
    loaded = load_model(out)
    assert loaded.input_shape == (1, 8, 8) and loaded.num_classes == 10
    assert loaded.model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_train_with_resize_and_channels(tmp_path, capsys):
    out = tmp_path / "m.pt"
    code = main(["train", "--arch", "test_resnet_cifar", "--dataset", "digits", "--epochs", "1", "--limit", "40",
                 "--input-size", "12x10", "--in-channels", "3", "--max-steps-per-epoch", "2", "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    assert load_model(out).input_shape == (3, 12, 10)


def _npz(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((12, 3, 8, 8), np.uint8), y=np.arange(12) % 2)
    return path


@pytest.mark.parametrize("case, match", [
    ("unknown_dataset", "unknown dataset 'digitz'"),
    ("unknown_arch", "unknown model 'resnet21'"),
    ("missing_npz", "does not exist"),
    ("output_is_input", "is the input file"),
    ("channels", "3-channel images but 1 input channel"),
    ("warmup", "warm-up epochs"),
])
def test_user_mistakes_exit_2_with_one_line(tmp_path, capsys, case, match):
    out = tmp_path / "model.pt"
    npz = _npz(tmp_path)
    argv = {"unknown_dataset": ["--dataset", "digitz"],
            "unknown_arch": ["--dataset", "digits"],
            "missing_npz": ["--dataset", f"npz:{tmp_path / 'no.npz'}"],
            "output_is_input": ["--dataset", f"npz:{npz}"],
            "channels": ["--dataset", f"npz:{npz}", "--in-channels", "1"],
            "warmup": ["--dataset", "digits", "--warmup-epochs", "5"]}[case]
    if case == "output_is_input":
        out = npz
    before = npz.read_bytes()
    arch = "resnet21" if case == "unknown_arch" else "test_resnet_cifar"
    code = main(["train", "--arch", arch, "--epochs", "1", "-o", str(out), *argv])
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("deploypipe: error: ") and match in lines[0], err
    assert "Traceback" not in err
    assert npz.read_bytes() == before
    assert case == "output_is_input" or not out.exists()
