"""Constant folding in ``normalize``: one op the reference runtime cannot run must not stop
the folding of the others."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from deploypipe.graph.normalize import normalize


def _graph(bad_shape: list[int]) -> onnx.ModelProto:
    scale = numpy_helper.from_array(np.arange(4, dtype=np.float32), "scale")
    table = numpy_helper.from_array(np.ones((2, 3), dtype=np.float32), "table")
    shape = numpy_helper.from_array(np.array(bad_shape, dtype=np.int64), "shape")
    axes = numpy_helper.from_array(np.array([0, 2, 3], dtype=np.int64), "axes")
    nodes = [
        helper.make_node("Unsqueeze", ["scale", "axes"], ["scale4"]),          # foldable
        helper.make_node("Reshape", ["table", "shape"], ["table2"]),           # fails when bad
        helper.make_node("Mul", ["x", "scale4"], ["y"]),
        helper.make_node("Identity", ["table2"], ["t"]),
    ]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 2, 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 2, 2]),
                           helper.make_tensor_value_info("t", TensorProto.FLOAT, None)],
                          initializer=[scale, table, shape, axes])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _ops(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node]


def test_everything_constant_folds():
    out = normalize(_graph([3, 2]), infer_shapes=False)
    assert "Unsqueeze" not in _ops(out) and "Reshape" not in _ops(out)
    assert numpy_helper.to_array(next(t for t in out.graph.initializer if t.name == "scale4")).shape == (1, 4, 1, 1)


def test_one_failing_op_keeps_only_itself_unfolded():
    out = normalize(_graph([5, 7]), infer_shapes=False)  # 6 values cannot become 5x7
    assert "Unsqueeze" not in _ops(out), "the independent constant must still fold"
    assert "Reshape" in _ops(out), "the op that cannot run stays in the graph"
