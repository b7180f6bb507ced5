"""``deploypipe build`` flags that are shorthands: ``--density`` is fbs's method argument."""
from __future__ import annotations

import pytest

from deploypipe.cli import main
from deploypipe.cli.build import config_from_args


def _args(argv):
    import argparse

    from deploypipe.cli.build import add_parser

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    return parser.parse_args(argv)


def test_density_becomes_the_fbs_method_argument(tmp_path):
    argv = ["build", "zoo:test_resnet_cifar", "--method", "fbs", "--density", "0.3", "-o", str(tmp_path / "r")]
    cfg = config_from_args(_args(argv), argv)
    assert cfg.prune.method == "fbs" and cfg.prune.method_params["density"] == "0.3"


def test_density_without_fbs_is_one_sentence_and_exit_2(tmp_path, capsys):
    code = main(["build", "zoo:test_resnet_cifar", "--dataset", "digits", "--density", "0.5", "-o", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "--density is a parameter of --method fbs" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("value", ["0", "1.5", "x"])
def test_density_outside_0_1_is_refused(tmp_path, capsys, value):
    code = main(["build", "zoo:test_resnet_cifar", "--method", "fbs", "--density", value, "-o", str(tmp_path / "r")])
    assert code == 2 and "density" in capsys.readouterr().err
