"""``-v``, ``-q`` and ``--debug`` work before and after the sub-command."""
from __future__ import annotations

import json
import logging

import pytest

from deploypipe.cli import build_parser, main


@pytest.mark.parametrize("argv, verbose, quiet, debug", [
    (["list", "archs"], 0, False, False),
    (["-v", "list", "archs"], 1, False, False),
    (["list", "archs", "-v"], 1, False, False),
    (["list", "archs", "-q"], 0, True, False),
    (["-q", "list", "archs", "--debug"], 0, True, True),
])
def test_output_options_anywhere(argv, verbose, quiet, debug):
    args = build_parser().parse_args(argv)
    assert (args.verbose, args.quiet, args.debug) == (verbose, quiet, debug)


def test_quiet_keeps_warnings_only(capsys):
    assert main(["list", "archs", "-q"]) == 0
    assert logging.getLogger("deploypipe").level == logging.WARNING
    assert "resnet20" in capsys.readouterr().out
    assert main(["list", "archs", "-v"]) == 0
    assert logging.getLogger("deploypipe").level == logging.DEBUG


def test_debug_after_the_command_shows_the_traceback(tmp_path):
    missing = str(tmp_path / "none.onnx")
    assert main(["inspect", missing]) == 2  # one sentence, exit code 2
    with pytest.raises(Exception):
        main(["inspect", missing, "--debug"])


def test_json_to_stdout(tmp_path, capsys):
    from deploypipe.export import export_onnx
    from deploypipe.models import create_model

    path = tmp_path / "m.onnx"
    export_onnx(create_model("test_resnet_cifar", num_classes=10, in_channels=1, input_size=8), path,
                input_shape=(1, 1, 8, 8))
    assert main(["inspect", str(path), "--json", "-"]) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)  # stdout is the JSON alone
    assert doc["model"] == str(path) and doc["macs"] > 0
    assert "groups" in err and not (tmp_path / "-").exists()


@pytest.mark.parametrize("raised", ["interrupt", "chained", "bug"])
def test_ctrl_c_is_one_line_and_130_even_when_a_library_re_raises_it(raised, monkeypatch, capsys):
    """A library that catches KeyboardInterrupt and raises its own error (seen once as
    'internal error: RuntimeError' when Ctrl-C landed while fine-tuning set up) is still Ctrl-C."""
    from deploypipe.cli import list_cmd

    def run(args):
        if raised == "interrupt":
            raise KeyboardInterrupt
        try:
            raise KeyboardInterrupt if raised == "chained" else ValueError("a bug")
        except BaseException as exc:
            raise RuntimeError("Error calling __call__") from exc

    monkeypatch.setattr(list_cmd, "run", run)
    code = main(["list", "archs"])
    err = capsys.readouterr().err.strip().splitlines()
    if raised == "bug":
        assert code == 3 and "internal error: RuntimeError" in err[-1]
    else:
        assert code == 130 and err == ["deploypipe: interrupted; finished stages are kept and a re-run resumes them."]
