"""The user's code named on the command line: ``module:name`` and ``file.py:name``."""
from __future__ import annotations

import textwrap

import pytest
import torch

from deploypipe.checkpoint.arch import build_model
from deploypipe.errors import InputError
from deploypipe.utils.user_code import load_callable

NET = """
    import torch.nn as nn
    from helper import WIDTH   # a module beside the file is importable
    def build(num_classes=10, in_channels=1):
        return nn.Sequential(nn.Conv2d(in_channels, WIDTH, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                             nn.Flatten(), nn.Linear(WIDTH, num_classes))
"""


def test_arch_from_a_file_builds_with_inferred_sizes(tmp_path):
    (tmp_path / "helper.py").write_text("WIDTH = 6\n")
    (tmp_path / "mynet.py").write_text(textwrap.dedent(NET))
    factory = load_callable(f"{tmp_path}/mynet.py:build", option="--arch", example="x.py:build")
    state = factory(num_classes=4, in_channels=3).state_dict()
    model = build_model(f"{tmp_path}/mynet.py:build", {}, state)
    assert model(torch.zeros(2, 3, 8, 8)).shape == (2, 4)


def test_module_spec_and_its_errors(tmp_path, monkeypatch):
    (tmp_path / "usermod_x.py").write_text("def f():\n    return 3\nVALUE = 1\n")
    monkeypatch.chdir(tmp_path)
    assert load_callable("usermod_x:f", option="--arch", example="m:f")() == 3
    with pytest.raises(InputError, match="cannot be called"):
        load_callable("usermod_x:VALUE", option="--arch", example="m:f")
    with pytest.raises(InputError, match="cannot import module 'no_such_mod'"):
        load_callable("no_such_mod:f", option="--arch", example="m:f")
    with pytest.raises(InputError, match="not of the form"):
        load_callable("justaname", option="--arch", example="m:f")


def test_a_file_that_fails_on_import_is_named(tmp_path):
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom')\n")
    with pytest.raises(InputError, match=r"running .*broken.py failed \(RuntimeError: boom\)"):
        load_callable(f"{tmp_path}/broken.py:f", option="--arch", example="m:f")
