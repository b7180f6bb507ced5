"""The reference model: a fixed ONNX graph timed in every round of every run, so that the
gate can tell "the machine is slower today" from "this model got slower".

It must not depend on anything a code change could alter (not the zoo, not the exporter):
it is built here from ``onnx.helper`` with seeded weights, byte for byte the same each
time. It mixes a dense 3x3 convolution (compute-bound) with a depthwise one and a 1x1
(memory-bound), because a busy neighbour slows the two kinds differently.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..utils.files import sha256_file, write_with
from .prepare import Case, case_id

if TYPE_CHECKING:
    import onnx

NAME = "reference"
SHAPE = (16, 32, 32)
WIDTH = 32
BLOCKS = 3
OPSET = 17
IR_VERSION = 8  # what opset 17 needs; onnx's newest IR can be newer than onnxruntime reads


def reference_case(workdir: Path) -> Case:
    """Write the reference model into ``workdir`` and return it as a batch-1 case."""
    path = write_with(workdir / "reference.onnx", lambda tmp: _save(build_reference(), tmp))
    return Case(case_id(NAME, 1, SHAPE), path, 1, SHAPE,
                {"name": NAME, "builtin": f"{BLOCKS} blocks of conv3x3/depthwise/conv1x1, "
                 f"width {WIDTH}"}, sha256_file(path))


def build_reference() -> "onnx.ModelProto":
    """The reference graph: ``BLOCKS`` residual blocks (3x3 conv to ``WIDTH`` channels,
    ReLU, depthwise 3x3, ReLU, 1x1 back to 16 channels, add)."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    nodes, inits = [], []
    x = "input"
    c = SHAPE[0]
    for i in range(BLOCKS):
        convs = ((f"b{i}.conv", (WIDTH, c, 3, 3), 1), (f"b{i}.dw", (WIDTH, 1, 3, 3), WIDTH),
                 (f"b{i}.pw", (c, WIDTH, 1, 1), 1))
        h = x
        for j, (name, wshape, group) in enumerate(convs):
            inits.append(_weight(rng, f"{name}.weight", wshape))
            pad = wshape[-1] // 2
            nodes.append(helper.make_node("Conv", [h, f"{name}.weight"], [f"{name}.out"],
                                          name=name, pads=[pad] * 4, group=group))
            h = f"{name}.out"
            if j < 2:
                nodes.append(helper.make_node("Relu", [h], [f"{name}.relu"]))
                h = f"{name}.relu"
        nodes.append(helper.make_node("Add", [x, h], [f"b{i}.add"]))
        x = f"b{i}.add"
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["output"]))
    graph = helper.make_graph(
        nodes, "deploypipe_bench_reference",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", *SHAPE])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", c, 1, 1])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="deploypipe.bench")
    model.ir_version = IR_VERSION
    return model


def _weight(rng: np.random.Generator, name: str, shape: tuple[int, ...]) -> "onnx.TensorProto":
    from onnx import numpy_helper

    fan_in = int(np.prod(shape[1:]))
    w = rng.standard_normal(shape).astype(np.float32) * np.float32(np.sqrt(1.0 / fan_in))
    return numpy_helper.from_array(w, name)


def _save(model: "onnx.ModelProto", path: Path) -> None:
    import onnx

    onnx.save(model, str(path))
