"""Channel groups on hand-built graphs of the shapes found in the wild."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from deploypipe.graph import analyse, shrink, verify_shrink
from deploypipe.testing.graphs import build_cnn


def spec(*blocks, head="gap_gemm", stem=8, in_channels=3, size=8):
    return {"in_channels": in_channels, "size": size, "stem": stem, "head": head, "classes": 3, "seed": 1,
            "blocks": [dict({"c": 8, "act": "Relu", "bn": True, "k": 3}, **b) for b in blocks]}


def groups_with(analysis, tensor, role="producer"):
    return [g for g in analysis.groups if any(m.tensor == tensor and m.role == role for m in g.members)]


def drop_half(analysis):
    return {g.id: list(range(0, g.width, 2)) for g in analysis.prunable if g.width > 1}


def check_oracle(analysis):
    drop = drop_half(analysis)
    small = shrink(analysis, drop)
    onnx.checker.check_model(small)
    report = verify_shrink(analysis, small, drop)
    assert report.passed, report.sentence()
    return small


def test_residual_add_ties_both_branches_and_batchnorm():
    a = analyse(build_cnn(spec({"kind": "residual"})))
    stem = groups_with(a, "w1")[0]  # the stem conv's weight
    roles = {(m.tensor, m.role) for m in stem.members}
    producers = [m for m in stem.members if m.role == "producer" and m.kind == "weight"]
    assert len(producers) == 2, "stem conv and the residual's second conv produce the same channels"
    assert any(r == "param" for _, r in roles) and any(r == "consumer" for _, r in roles)
    assert stem.prunable
    check_oracle(a)


def test_concat_and_split_offsets_and_sizes():
    a = analyse(build_cnn(spec({"kind": "csp", "c": 4})))
    split_sizes = {tuple(numpy_helper.to_array(t).tolist()) for t in a.model.graph.initializer if t.name.startswith("split")}
    assert split_sizes == {(4, 4)}
    # the CSP conv's 8 output channels are two independent groups of 4 (the two halves of the Split)
    csp_conv = [n for n in a.model.graph.node if n.op_type == "Conv"][1]
    halves = groups_with(a, csp_conv.input[1])
    producer_offsets = sorted(m.offset for g in halves for m in g.members
                              if m.tensor == csp_conv.input[1] and m.role == "producer")
    assert producer_offsets == [0, 4] and all(g.width == 4 for g in halves)
    small = check_oracle(a)
    new_sizes = [numpy_helper.to_array(t).tolist() for t in small.graph.initializer if "split" in t.name]
    assert [2, 2] in new_sizes


def test_flatten_into_gemm_makes_channel_blocks():
    a = analyse(build_cnn(spec({"kind": "conv", "c": 6}, head="flatten_gemm", size=4)))
    gemm = next(n for n in a.model.graph.node if n.op_type == "Gemm")
    consumer = next(m for g in a.groups for m in g.members if m.tensor == gemm.input[1] and m.role == "consumer")
    assert consumer.block == 16 and consumer.axis == 1  # 4x4 map: each channel is 16 features
    check_oracle(a)


def test_reshape_into_matmul_is_followed():
    a = analyse(build_cnn(spec({"kind": "conv", "c": 6}, head="reshape_matmul", size=4)))
    mm = next(n for n in a.model.graph.node if n.op_type == "MatMul")
    member = next(m for g in a.groups for m in g.members if m.tensor == mm.input[1] and m.role == "consumer")
    assert member.block == 16 and member.axis == 0
    check_oracle(a)


def test_depthwise_ties_input_and_output_and_follows_group_attribute():
    a = analyse(build_cnn(spec({"kind": "depthwise", "c": 6})))
    dw = next(n for n in a.model.graph.node if any(at.name == "group" and at.i > 1 for at in n.attribute))
    group = groups_with(a, dw.input[1])[0]
    weight = next(m for m in group.members if m.tensor == dw.input[1])
    assert weight.block == 2, "channel multiplier 2: each input channel owns two output channels"
    assert group.width == 8 and group.prunable  # the stem's 8 channels
    small = check_oracle(a)
    new_dw = next(n for n in small.graph.node if n.name == dw.name)
    assert next(at.i for at in new_dw.attribute if at.name == "group") == 4


def test_grouped_conv_prunes_whole_groups():
    a = analyse(build_cnn(spec({"kind": "grouped", "k": 3})))
    conv = next(n for n in a.model.graph.node if any(at.name == "group" and at.i == 4 for at in n.attribute))
    g = groups_with(a, conv.input[1])[0]
    assert g.width == 4, "one channel of the group is one of the 4 convolution groups"
    small = check_oracle(a)
    assert next(at.i for n in small.graph.node if n.name == conv.name for at in n.attribute if at.name == "group") == 2


def test_squeeze_excite_with_hardswish_ties_the_expand_conv():
    a = analyse(build_cnn(spec({"kind": "conv", "act": "HardSwish"}, {"kind": "se", "act": "HardSwish"})))
    convs = [n for n in a.model.graph.node if n.op_type == "Conv"]
    main, expand = convs[1], convs[3]
    assert groups_with(a, main.input[1])[0] is groups_with(a, expand.input[1])[0]
    assert any(n.op_type == "HardSigmoid" for n in a.model.graph.node)
    check_oracle(a)


def test_channel_shuffle_is_followed_as_a_fixed_permutation():
    """[N,8,H,W] -> [N,2,4,H,W] -> transpose -> [N,8,H,W]: channel b of each half goes
    with the same channel of the other half (output channels 2b, 2b+1)."""
    a = analyse(build_cnn(spec({"kind": "conv", "c": 8}, {"kind": "shuffle"})))
    conv = [n for n in a.model.graph.node if n.op_type == "Conv"][1]
    (group,) = groups_with(a, conv.input[1])
    assert group.prunable and group.width == 4
    rows = [m for m in group.members if m.tensor == conv.input[1]]
    assert sorted(int(i) for m in rows for i in m.indices([1])) == [1, 5]  # channel 1 of each shuffle row
    small = check_oracle(a)
    targets = [numpy_helper.to_array(t).tolist() for t in small.graph.initializer if t.name.startswith("shape")]
    assert [0, 2, 2, 8, 8] in targets or any(t[:3] == [0, 2, 2] for t in targets)


def test_graph_output_freezes_the_logits_group():
    a = analyse(build_cnn(spec({"kind": "conv"})))
    last = a.groups[-1]
    assert last.frozen and "graph output" in last.reasons[0]
    assert all(not g.frozen for g in a.groups[:-1])


@pytest.mark.parametrize("kind", ["pool", "resize", "pad", "scale", "slice_concat", "branch_concat",
                                  "convtranspose", "transpose_roundtrip"])
def test_each_block_kind_is_followed_exactly(kind):
    a = analyse(build_cnn(spec({"kind": "conv"}, {"kind": kind}, {"kind": "conv"})))
    assert len(a.prunable) >= 2
    check_oracle(a)


@pytest.mark.parametrize("act", ["SiLU", "GELU", "PRelu", "Clip", "LeakyRelu", "Sigmoid", "HardSwish"])
def test_activations_keep_channels_and_prelu_slopes_are_params(act):
    a = analyse(build_cnn(spec({"kind": "conv", "act": act, "bn": False})))
    assert a.groups[0].prunable
    if act == "PRelu":
        assert any(m.kind == "slope" for m in a.groups[1].members)
    check_oracle(a)


def _paddle_style_model() -> onnx.ModelProto:
    """Weights in Constant nodes and an Identity chain, as Paddle and TF exporters write them."""
    rng = np.random.default_rng(0)
    nodes, inits = [], []

    def const_node(name, arr):
        nodes.append(helper.make_node("Constant", [], [name], value=numpy_helper.from_array(arr.astype(np.float32))))

    const_node("w1", rng.standard_normal((6, 3, 3, 3)))
    const_node("w2", rng.standard_normal((4, 6, 1, 1)))
    nodes += [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
              helper.make_node("Identity", ["c1"], ["i1"]),
              helper.make_node("Identity", ["i1"], ["i2"]),
              helper.make_node("Relu", ["i2"], ["r1"]),
              helper.make_node("Conv", ["r1", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "paddle", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 5, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 5, 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def test_paddle_constant_weights_and_identity_chains_are_normalised():
    model = _paddle_style_model()
    before = model.SerializeToString()
    a = analyse(model)
    assert model.SerializeToString() == before, "analysis must not modify its input"
    assert {t.name for t in a.model.graph.initializer} >= {"w1", "w2"}
    assert not any(n.op_type in ("Constant", "Identity") for n in a.model.graph.node)
    (group,) = a.prunable
    assert group.width == 6 and {m.tensor for m in group.members} == {"w1", "w2"}
    check_oracle(a)


def test_unknown_op_freezes_with_its_name():
    model = _paddle_style_model()
    relu = next(n for n in model.graph.node if n.op_type == "Relu")
    relu.op_type, relu.name = "LpNormalization", "mystery"
    a = analyse(model)
    (group,) = [g for g in a.groups if any(m.tensor == "w1" for m in g.members)]
    assert group.frozen and "LpNormalization node 'mystery'" in group.reasons[0]


def test_shared_initializer_read_by_an_unrelated_node_freezes():
    model = _paddle_style_model()
    model.graph.input.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, [6, 3, 3, 3]))
    model.graph.node.append(helper.make_node("Add", ["w1", "z"], ["w1_plus"], name="peek"))
    model.graph.output.append(helper.make_tensor_value_info("w1_plus", TensorProto.FLOAT, [6, 3, 3, 3]))
    a = analyse(model)
    group = next(g for g in a.groups if any(m.tensor == "w1" for m in g.members))
    assert group.frozen and "also read by Add node 'peek'" in group.reasons[0]
