"""`deploypipe inspect` and `deploypipe shrink` through the CLI, including bad input."""
from __future__ import annotations

import json

import onnx
import pytest

from deploypipe.cli import main
from deploypipe.graph import analyse, load_onnx
from deploypipe.testing.graphs import build_cnn
from deploypipe.utils.files import sha256_file

SPEC = {"in_channels": 3, "size": 8, "stem": 8, "head": "flatten_gemm", "classes": 4, "seed": 3,
        "blocks": [{"kind": "residual", "c": 8, "act": "Relu", "bn": True, "k": 3},
                   {"kind": "csp", "c": 4, "act": "HardSwish", "bn": True, "k": 1},
                   {"kind": "shuffle", "c": 4, "act": "Relu", "bn": True, "k": 1},
                   {"kind": "layernorm", "c": 8, "act": "Relu", "bn": True, "k": 1}]}


@pytest.fixture()
def model_path(tmp_path):
    path = tmp_path / "model.onnx"
    onnx.save(build_cnn(SPEC), str(path))
    return path


def _mystery_model() -> onnx.ModelProto:
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.random((8, 3, 3, 3), dtype=np.float32), "w1"),
               numpy_helper.from_array(rng.random((4, 8, 3, 3), dtype=np.float32), "w2")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]),
             helper.make_node("Mystery", ["a"], ["b"], domain="com.example"),
             helper.make_node("Conv", ["b", "w2"], ["y"], pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])


def test_inspect_freezes_an_op_without_shapes_and_names_it(tmp_path, capsys):
    path = tmp_path / "mystery.onnx"
    onnx.save(_mystery_model(), str(path))
    code, stdout, _ = run(capsys, "inspect", path)
    assert code == 0 and "Mystery node" in stdout and "0 prunable" in stdout


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_inspect_prints_table_and_writes_members_json(model_path, tmp_path, capsys):
    code, out, _ = run(capsys, "inspect", model_path, "--json", tmp_path / "g.json")
    assert code == 0
    assert "prunable" in out and "frozen" in out and "normalises across channels" in out
    data = json.loads((tmp_path / "g.json").read_text())
    member = data["groups"][0]["members"][0]
    assert set(member) >= {"tensor", "axis", "role", "offset", "block"}
    assert {m["role"] for g in data["groups"] for m in g["members"]} <= {"producer", "consumer", "param"}


def test_shrink_ratio_verify_writes_smaller_model(model_path, tmp_path, capsys):
    before = sha256_file(model_path)
    out_path = tmp_path / "small.onnx"
    code, out, _ = run(capsys, "shrink", model_path, "-o", out_path, "--ratio", "0.5", "--verify",
                       "--json", tmp_path / "r.json")
    assert code == 0 and "oracle passed" in out
    assert sha256_file(model_path) == before
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["macs_after"] < report["macs_before"] and report["oracle"]["passed"]
    onnx.checker.check_model(onnx.load(str(out_path)))


def test_shrink_drop_file_and_round_to(model_path, tmp_path, capsys):
    drop = tmp_path / "drop.json"
    drop.write_text(json.dumps({"0": [0, 1, 2]}))
    code, out, _ = run(capsys, "shrink", model_path, "-o", tmp_path / "a.onnx", "--drop", drop, "--verify")
    assert code == 0 and "removed 3 channels from 1 groups" in out
    code, _, _ = run(capsys, "shrink", model_path, "-o", tmp_path / "b.onnx", "--ratio", "0.3",
                     "--round-to", "4", "--json", tmp_path / "b.json")
    dropped = json.loads((tmp_path / "b.json").read_text())["drop"]
    widths = {str(g.id): g.width for g in analyse(load_onnx(model_path)).groups}
    assert code == 0 and all((widths[k] - len(v)) % 4 == 0 for k, v in dropped.items())


@pytest.mark.parametrize("case", ["not_onnx", "truncated", "frozen_group", "out_of_range", "all_channels",
                                  "bad_json", "output_is_input", "missing", "op_without_shapes"])
def test_bad_input_is_one_sentence_exit_2_and_input_unchanged(case, model_path, tmp_path, capsys):
    target = model_path
    args = ["--ratio", "0.5"]
    if case == "not_onnx":
        target = tmp_path / "x.onnx"
        target.write_text("hello, I am not a model")
    elif case == "truncated":
        target = tmp_path / "t.onnx"
        target.write_bytes(model_path.read_bytes()[:200])
    elif case == "missing":
        target = tmp_path / "nope.onnx"
    elif case == "op_without_shapes":  # a custom op between two convs: no shape, nothing prunable
        target = tmp_path / "mystery.onnx"
        onnx.save(_mystery_model(), str(target))
    elif case in ("frozen_group", "out_of_range", "all_channels", "bad_json"):
        from deploypipe.graph import analyse, load_onnx

        a = analyse(load_onnx(model_path))
        frozen = next(g for g in a.groups if g.frozen)
        first = a.prunable[0]
        content = {"frozen_group": {str(frozen.id): [0]}, "out_of_range": {str(first.id): [first.width]},
                   "all_channels": {str(first.id): list(range(first.width))}}.get(case)
        drop = tmp_path / "drop.json"
        drop.write_text(json.dumps(content) if content else "{not json")
        args = ["--drop", drop]
    out = model_path if case == "output_is_input" else tmp_path / "out.onnx"
    before = sha256_file(target) if target.exists() else None
    code, stdout, err = run(capsys, "shrink", target, "-o", out, *args)
    assert code == 2
    lines = [l for l in err.strip().splitlines() if l]
    assert len(lines) == 1 and lines[0].startswith("deploypipe: error:") and "Traceback" not in err
    if before is not None:
        assert sha256_file(target) == before
    if case != "output_is_input":
        assert not out.exists()
