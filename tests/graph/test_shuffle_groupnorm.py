"""Channel shuffles, GroupNorm, scalar affines and LayerNorm over channels (issue 25): what
each prunes, in which units, and that the surgery stays exact."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from deploypipe.graph import analyse, shrink, verify_shrink
from deploypipe.prune.plan import plan_drop
from deploypipe.testing.graphs import build_cnn


def spec(*blocks, seed=1):
    return {"in_channels": 3, "size": 8, "stem": 8, "head": "gap_gemm", "classes": 3, "seed": seed,
            "blocks": [dict({"c": 8, "act": "Relu", "bn": True, "k": 3}, **b) for b in blocks]}


def producer_group(a, node):
    (group,) = [g for g in a.groups if any(m.tensor == node.input[1] and m.role == "producer" for m in g.members)]
    return group


def shrunk(a, drop=None):
    drop = drop if drop is not None else {g.id: list(range(0, g.width, 2)) for g in a.prunable if g.width > 1}
    small = shrink(a, drop)
    onnx.checker.check_model(small, full_check=True)
    report = verify_shrink(a, small, drop)
    assert report.passed, report.sentence()
    return small


def nodes(model, op):
    return [n for n in model.graph.node if n.op_type == op]


def attr(node, name):
    return next(helper.get_attribute_value(a) for a in node.attribute if a.name == name)


@pytest.mark.parametrize("c", [8, 12])
def test_shufflenet_unit_keeps_group_counts_and_prunes_positions(c):
    """Grouped 1x1 convs (g=2 or 3) either side of a shuffle: each group loses the same
    positions, the shuffle's Reshape follows, ``group`` stays."""
    a = analyse(build_cnn(spec({"kind": "conv", "c": 12}, {"kind": "shuffle_unit", "c": c})))
    reduce = nodes(a.model, "Conv")[2]
    groups = attr(reduce, "group")
    mid = producer_group(a, reduce)
    assert mid.prunable and groups in (2, 3) and 1 < mid.width < c
    small = shrunk(a)
    assert [attr(n, "group") for n in nodes(small, "Conv")][2] == groups
    depthwise = nodes(small, "Conv")[3]
    assert attr(depthwise, "group") == numpy_helper.to_array(
        next(t for t in small.graph.initializer if t.name == depthwise.input[1])).shape[0]


def test_groupnorm_op_loses_whole_groups():
    a = analyse(build_cnn(spec({"kind": "conv"}, {"kind": "groupnorm", "c": 8, "k": 3, "bn": True})))
    assert a.model.opset_import[0].version == 21
    gn = nodes(a.model, "GroupNormalization")[0]
    group = producer_group(a, nodes(a.model, "Conv")[2])
    assert group.prunable and group.width == attr(gn, "num_groups") == 4  # 8 channels, groups of 2
    small = shrunk(a, {group.id: [1, 3]})
    assert attr(nodes(small, "GroupNormalization")[0], "num_groups") == 2


def test_groupnorm_as_pytorch_exports_it_loses_whole_groups():
    """Reshape [N,G,-1], InstanceNormalization, Reshape to Shape(x), Mul, Add."""
    a = analyse(build_cnn(spec({"kind": "conv"}, {"kind": "groupnorm", "c": 8, "k": 1, "bn": False})))
    group = producer_group(a, nodes(a.model, "Conv")[2])
    assert group.prunable and group.width == 2  # 8 channels in 2 groups of 4
    small = shrunk(a, {group.id: [0]})
    scale = nodes(small, "InstanceNormalization")[0].input[1]
    assert numpy_helper.to_array(next(t for t in small.graph.initializer if t.name == scale)).shape == (1,)


@pytest.mark.parametrize("bn", [True, False])
def test_scalar_affine_after_batchnorm_keeps_channels_prunable(bn):
    a = analyse(build_cnn(spec({"kind": "conv"}, {"kind": "affine", "bn": bn})))
    assert producer_group(a, nodes(a.model, "Conv")[1]).prunable
    shrunk(a)


@pytest.mark.parametrize("bn", [True, False])
def test_layernorm_over_channels_freezes_with_its_reason(bn):
    a = analyse(build_cnn(spec({"kind": "conv"}, {"kind": "layernorm", "bn": bn})))
    frozen = producer_group(a, nodes(a.model, "Conv")[1])
    assert frozen.frozen and "LayerNormalization node" in frozen.reasons[0]
    assert "normalises across channels" in frozen.reasons[0]
    assert producer_group(a, nodes(a.model, "Conv")[2]).prunable
    shrunk(a)


def test_shuffle_whose_split_target_leaves_the_channel_count_to_minus_one():
    """[0, 2, -1, 4, 4]: the -1 stays and keeps following the channels (a run-time ``c // g``,
    as PyTorch exports ``x.view(n, g, c // g, h, w)``, is covered by
    tests/prune/test_grouped_positions.py)."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((8, 3, 1, 1)).astype(np.float32), "w")
    w2 = numpy_helper.from_array(rng.standard_normal((4, 8, 1, 1)).astype(np.float32), "w2")
    shape = numpy_helper.from_array(np.array([0, 2, -1, 4, 4], np.int64), "s")
    back = numpy_helper.from_array(np.array([0, 8, 4, 4], np.int64), "b")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["a"]), helper.make_node("Reshape", ["a", "s"], ["r"]),
         helper.make_node("Transpose", ["r"], ["t"], perm=[0, 2, 1, 3, 4]),
         helper.make_node("Reshape", ["t", "b"], ["u"]), helper.make_node("Conv", ["u", "w2"], ["y"])],
        "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 3, 4, 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 4, 4, 4])], [w, w2, shape, back])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    a = analyse(model)
    group = producer_group(a, a.model.graph.node[0])
    assert group.prunable and group.width == 4
    shrunk(a, plan_drop(a, ratio=0.5))
