"""BatchNorm folded into the convolution before it: the same outputs, fewer kernels, and no
fold where the convolution's output has another reader."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from deploypipe.backends.batchnorm_fold import fold_module, fold_onnx
from deploypipe.export import export_onnx
from deploypipe.models import create_model


def _randomised(name: str) -> torch.nn.Module:
    """A zoo model whose BatchNorms are far from identity, so a wrong fold shows."""
    torch.manual_seed(0)
    model = create_model(name)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


@pytest.mark.parametrize("name", ["test_resnet_cifar", "test_mobilenet_v2"])
def test_folded_onnx_computes_the_same(name, tmp_path):
    import onnxruntime as ort

    model = _randomised(name)
    size = tuple(model.deploypipe_arch["kwargs"]["input_size"])
    export_onnx(model, tmp_path / "m.onnx", input_shape=(1, 3, *size))
    original = onnx.load(str(tmp_path / "m.onnx"))
    folded, count = fold_onnx(original)
    bns = sum(n.op_type == "BatchNormalization" for n in original.graph.node)
    assert count == bns > 0
    assert not any(n.op_type == "BatchNormalization" for n in folded.graph.node)
    assert sum(n.op_type == "BatchNormalization" for n in original.graph.node) == bns  # input kept
    onnx.checker.check_model(folded)
    x = np.random.default_rng(0).standard_normal((3, 3, *size)).astype(np.float32)
    run = lambda m: ort.InferenceSession(m.SerializeToString()).run(None, {"input": x})[0]  # noqa: E731
    np.testing.assert_allclose(run(folded), run(original), rtol=1e-4, atol=1e-4)
    weights = {t.name for t in folded.graph.initializer}
    assert {t.name for t in original.graph.initializer if "conv" in t.name and t.name.endswith(
        "weight")} <= weights  # the folded weights keep their names (module names follow them)


def test_a_conv_output_read_twice_is_not_folded():
    w = numpy_helper.from_array(np.ones((2, 2, 1, 1), np.float32), "w")
    stats = [numpy_helper.from_array(np.full(2, v, np.float32), n)
             for n, v in (("g", 2.0), ("b", 0.5), ("m", 0.1), ("v", 4.0))]
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"]),
         helper.make_node("BatchNormalization", ["y", "g", "b", "m", "v"], ["z"]),
         helper.make_node("Add", ["y", "z"], ["out"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 2, 2])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 2, 2, 2])], [w, *stats])
    model = helper.make_model(graph)
    folded, count = fold_onnx(model)
    assert count == 0 and folded.graph == model.graph


def test_fold_module_keeps_outputs_and_names():
    model = _randomised("test_resnet_cifar")
    folded, count = fold_module(model)
    assert count == sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) > 0
    names = {n for n, _ in folded.named_modules()}
    assert "conv1" in names and "bn1" not in names
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-4)


def test_a_module_fx_cannot_trace_is_returned_unchanged():
    class Branchy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = torch.nn.Conv2d(1, 2, 1), torch.nn.BatchNorm2d(2)

        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow
                return self.bn(self.conv(x))
            return x

    model = Branchy().eval()
    assert fold_module(model) == (model, 0)
