"""Layer names to ONNX nodes (TensorRT's fusion spellings, PyTorch module names) and nodes to
channel groups."""
from __future__ import annotations

import onnx
import pytest

from deploypipe.backends.base import LayerTime
from deploypipe.backends.layer_map import (GraphIndex, module_groups, node_groups,
                                           trt_layer_nodes, with_groups)
from deploypipe.graph import analyse


@pytest.fixture(scope="module")
def index(tiny_onnx) -> GraphIndex:
    return GraphIndex.from_path(tiny_onnx)


@pytest.fixture(scope="module")
def analysis(tiny_onnx):
    return analyse(onnx.load(str(tiny_onnx)))


def _convs(index: GraphIndex) -> list[str]:
    return [n for n in index.order if index.ops[n] == "Conv"]


def test_fusion_spellings(index):
    a, b, c = _convs(index)[:3]
    relu = next(n for n in index.order if index.ops[n] == "Relu")
    assert trt_layer_nodes(f"{a} + {relu}", index) == (a, relu)
    assert trt_layer_nodes(f"{a} || {b}", index) == (a, b)
    assert trt_layer_nodes(f"PWN({relu}, PWN({c}))", index) == (relu, c)
    assert trt_layer_nodes("Reformatting CopyNode for Input Tensor 0 to x", index) == ()
    assert trt_layer_nodes("(Unnamed Layer* 7) [Shuffle]", index) == ()
    assert trt_layer_nodes("__myl_MulAdd_0", index) == ()


def test_foreign_node_covers_the_span(index):
    first, last = index.order[2], index.order[6]
    assert trt_layer_nodes(f"{{ForeignNode[{first}...{last}]}}", index) == index.order[2:7]


def test_tensor_names_map_to_their_producer(index):
    node = _convs(index)[1]
    out = next(o for o in index.tensors[node] if o not in ("input",) and "weight" not in o
               and index.producers.get(o) == node)
    assert trt_layer_nodes(f"{out} copy", index) == (node,)


def test_nodes_and_modules_map_to_the_same_groups(analysis, index):
    per_node = node_groups(analysis)
    first_conv = _convs(index)[0]
    assert per_node[first_conv]  # the stem conv writes a channel group
    stem = module_groups(analysis, "conv1")
    assert set(stem) <= set(per_node[first_conv]) and stem
    layers = [LayerTime("fused", "Conv", 1.0, 1.0, 1.0, 50.0, first_conv, (first_conv,)),
              LayerTime("conv1", "Conv2d", 1.0, 1.0, 1.0, 50.0)]
    node_layer, module_layer = with_groups(layers, analysis)
    assert node_layer.groups == per_node[first_conv]
    assert module_layer.groups == stem
    assert module_groups(analysis, "no.such.module") == ()


def test_an_ort_kernel_fused_into_a_conv_covers_the_conv_it_starts_from():
    """ONNX Runtime names Conv+BatchNorm+Add+Relu by the Relu's output; the layer must still
    cover the Conv (the per-layer profile's coverage of convolutions depends on it)."""
    from deploypipe.backends.ort_profile import NodeIndex

    ops = {"c": "Conv", "bn": "BatchNormalization", "add": "Add", "r": "Relu", "c0": "Conv"}
    inputs = {"c": ["x", "w"], "bn": ["c_out", "s"], "add": ["skip", "bn_out"], "r": ["add_out"]}
    producers = {"c_out": "c", "bn_out": "bn", "add_out": "add", "r_out": "r", "skip": "c0"}
    index = NodeIndex(ops, producers, ops, inputs)
    assert index.fused("r", "Conv") == ("c", "bn", "add", "r")
    assert index.fused("bn", "Conv") == ("c", "bn")
    assert index.fused("r", "Relu") == ("r",)  # an unfused activation covers itself
    assert index.fused("c", "Conv") == ("c",)
