"""--mean/--std reach the data: the same checkpoint evaluated with the wrong statistics scores
lower, the right ones (or none: the checkpoint's stored ones) score as trained."""
from __future__ import annotations

import json

from deploypipe.cli import main


def _dense_accuracy(tmp_path, ckpt, name: str, *extra: str) -> dict:
    out = tmp_path / name
    assert main(["build", str(ckpt), "--dataset", "digits", "--ratio", "0.2", "--epochs", "0",
                 "-o", str(out), "-q", *extra]) == 0
    return json.loads((out / "report.json").read_text())


def test_user_statistics_are_used(tmp_path):
    ckpt = tmp_path / "digits.pt"
    assert main(["train", "--arch", "test_resnet_cifar", "--dataset", "digits", "--epochs", "4", "--lr", "0.05",
                 "-o", str(ckpt), "-q"]) == 0
    stored = _dense_accuracy(tmp_path, ckpt, "stored")
    wrong = _dense_accuracy(tmp_path, ckpt, "wrong", "--mean", "0.9", "--std", "0.1")
    assert stored["preprocessing"]["from"] == "the checkpoint's"
    assert wrong["preprocessing"] == {"mean": [0.9], "std": [0.1], "from": "given (--mean/--std)"}
    assert stored["dense"]["accuracy"] > 0.8
    assert wrong["dense"]["accuracy"] < stored["dense"]["accuracy"] - 0.1


def test_mean_without_std_is_one_sentence(tmp_path, capsys):
    code = main(["build", "zoo:test_resnet_cifar", "--dataset", "digits", "--mean", "0.5", "-o", str(tmp_path / "x")])
    assert code == 2
    assert "--mean was given without --std" in capsys.readouterr().err
