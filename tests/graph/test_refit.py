"""Layer-wise reconstruction of a model given only as ONNX (:mod:`deploypipe.graph.refit`):
a resnet20 trained on digits, pruned by weight magnitude to half its MACs, loses nearly all
its accuracy by plain removal and gets it back by refitting, without PyTorch.

numpy's BLAS runs single-threaded here: on shared cores a two-thread BLAS that waits on a
busy neighbour makes the small normal-equation products many times slower.
"""
from __future__ import annotations


import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from threadpoolctl import threadpool_limits

from deploypipe.errors import InputError
from deploypipe.graph import analyse, shrink
from deploypipe.graph.evaluate import onnx_accuracy, predictions, session, top1_agreement
from deploypipe.graph.refit import refit
from deploypipe.graph.scores import weight_scores

CALIBRATION = 512


def _arrays(split) -> tuple[np.ndarray, np.ndarray]:
    x, y = split.tensors
    return x.numpy(), y.numpy()


def _uniform_drop(analysis, keep_ratio: float) -> dict[int, np.ndarray]:
    """The lowest-L1 channels of every prunable group, the same share of each."""
    drop = {}
    for g in analysis.prunable:
        scores = weight_scores(analysis, g, "l1")
        n = g.width - max(1, round(g.width * keep_ratio))
        if n > 0:
            drop[g.id] = np.sort(np.argsort(scores, kind="stable")[:n])
    return drop


def _half_macs(analysis) -> dict[int, np.ndarray]:
    """The widest uniform drop that leaves at most half the MACs."""
    for ratio in np.arange(0.95, 0.2, -0.05):
        drop = _uniform_drop(analysis, ratio)
        widths = analysis.widths() - np.array([len(drop.get(g.id, ())) for g in analysis.groups])
        if analysis.cost.macs(widths) <= 0.5 * analysis.macs:
            return drop
    raise AssertionError("no uniform ratio halves the MACs")


@pytest.fixture(scope="module")
def digits():
    from deploypipe.data import load_dataset

    return load_dataset("digits", seed=0)


@pytest.fixture(scope="module")
def resnet20(digits, tmp_path_factory) -> onnx.ModelProto:
    """resnet20 trained 6 epochs on digits, exported and read back as ONNX."""
    from deploypipe.testing.trained import digits_resnet20_onnx

    path = digits_resnet20_onnx(digits, tmp_path_factory.mktemp("refit") / "resnet20.onnx")
    return onnx.load(str(path))


@pytest.fixture(scope="module")
def pruned(resnet20, digits):
    """(analysis, drop, plain removal, refitted, summary, the inputs' bytes before refit)."""
    analysis = analyse(resnet20)
    drop = _half_macs(analysis)
    small = shrink(analysis, drop)
    before = (analysis.model.SerializeToString(deterministic=True), small.SerializeToString(deterministic=True))
    x, _ = _arrays(digits.train)
    with threadpool_limits(limits=1, user_api="blas"):
        refitted, summary = refit(analysis, small, drop, x[:CALIBRATION], batch=256)
    return analysis, drop, small, refitted, summary, before


def test_refit_recovers_the_accuracy_plain_removal_loses(pruned, digits):
    analysis, _, small, refitted, summary, _ = pruned
    assert analyse(small, normalized=True).macs <= 0.5 * analysis.macs
    x, y = _arrays(digits.test)
    dense, plain, fixed = (onnx_accuracy(m, x, y) for m in (analysis.model, small, refitted))
    assert dense >= 0.95
    assert plain < dense - 0.3, f"plain removal should hurt here: {plain:.3f} vs dense {dense:.3f}"
    assert fixed >= plain + 0.3, f"refit {fixed:.3f} vs plain removal {plain:.3f}"
    assert fixed >= dense - 0.05, f"refit {fixed:.3f} vs dense {dense:.3f}"
    assert summary.seconds > 0


def test_refit_lowers_every_layers_reconstruction_error(pruned):
    summary = pruned[4]
    assert len(summary.layers) >= 19 and not summary.skipped  # every conv and the fc lost inputs
    for fit in summary.layers:
        assert fit.error_after <= fit.error_before + 1e-9, fit
        assert fit.rows <= 16384
    assert summary.error_after < 0.5 * summary.error_before
    assert "refitted" in summary.sentence() and summary.to_dict()["layers"][0]["node"] == summary.layers[0].node


def test_refit_leaves_its_input_models_unchanged(pruned):
    analysis, _, small, refitted, _, before = pruned
    assert analysis.model.SerializeToString(deterministic=True) == before[0]
    assert small.SerializeToString(deterministic=True) == before[1]
    assert refitted.SerializeToString() != small.SerializeToString()
    onnx.checker.check_model(refitted)


def test_refit_agrees_with_the_dense_top1_more_often(pruned, digits):
    analysis, _, small, refitted, _, _ = pruned
    x, _ = _arrays(digits.test)
    plain, fixed = top1_agreement(analysis.model, small, x), top1_agreement(analysis.model, refitted, x)
    assert fixed > plain + 0.3 and fixed >= 0.95


def test_depthwise_convolutions_are_skipped_with_a_reason(tmp_path):
    from deploypipe.export import export_onnx
    from deploypipe.models import create_model

    model = create_model("test_mobilenet_v2", num_classes=10, in_channels=3, input_size=16)
    export_onnx(model.eval(), tmp_path / "m.onnx", input_shape=(1, 3, 16, 16))
    analysis = analyse(onnx.load(str(tmp_path / "m.onnx")))
    drop = _uniform_drop(analysis, 0.5)
    small = shrink(analysis, drop)
    x = np.random.default_rng(0).standard_normal((32, 3, 16, 16)).astype(np.float32)
    with threadpool_limits(limits=1, user_api="blas"):
        refitted, summary = refit(analysis, small, drop, x, rows=2048)
    depthwise = [node for node, why in summary.skipped if "depthwise convolution (group=" in why]
    assert depthwise and len(depthwise) == len(summary.skipped)
    assert {f.node for f in summary.layers}.isdisjoint(depthwise) and summary.layers
    assert all(f.error_after <= f.error_before + 1e-9 for f in summary.layers)
    assert predictions(refitted, x).shape == (32,)
    assert "left as plain removal" in summary.sentence()


# -- exactness on small graphs: a dropped channel that is a combination of kept ones --------
def _redundant(w: np.ndarray, axis: int) -> np.ndarray:
    """``w`` with its last slice along ``axis`` = 2 x slice 1 + slice 0 (a redundant channel)."""
    w = np.moveaxis(w.copy(), axis, 0)
    w[-1] = 2 * w[1] + w[0]
    return np.moveaxis(w, 0, axis)


def _graph(nodes, inits, x_shape, y_shape) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)],
                              [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def _outputs(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return session(model).run(None, {"x": x})[0]


def _conv_pair(**conv2) -> tuple[onnx.ModelProto, tuple[int, ...]]:
    rng = np.random.default_rng(1)
    inits = {"w1": _redundant(rng.standard_normal((6, 3, 1, 1)), 0), "w2": rng.standard_normal((4, 6, 3, 3))}
    nodes = [helper.make_node("Conv", ["x", "w1"], ["h"]), helper.make_node("Conv", ["h", "w2"], ["y"], **conv2)]
    return _graph(nodes, inits, [None, 3, 8, 9], None), (3, 8, 9)  # SAME pads 8 and 9 unevenly


def _gemm_pair() -> tuple[onnx.ModelProto, tuple[int, ...]]:
    rng = np.random.default_rng(2)
    inits = {"w1": _redundant(rng.standard_normal((6, 5)), 0), "w2": rng.standard_normal((3, 6)),
             "c": rng.standard_normal(3)}
    nodes = [helper.make_node("Gemm", ["x", "w1"], ["h"], transB=1),
             helper.make_node("Gemm", ["h", "w2", "c"], ["y"], transB=1, alpha=0.5, beta=2.0)]
    return _graph(nodes, inits, [None, 5], None), (5,)


def _matmul_pair() -> tuple[onnx.ModelProto, tuple[int, ...]]:
    rng = np.random.default_rng(3)
    inits = {"w1": _redundant(rng.standard_normal((5, 6)), 1), "w2": rng.standard_normal((6, 3))}
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("MatMul", ["h", "w2"], ["y"])]
    return _graph(nodes, inits, [None, 4, 5], None), (4, 5)


@pytest.mark.parametrize("make", [
    lambda: _conv_pair(strides=[2, 1], pads=[1, 0, 2, 1], dilations=[2, 1]),
    lambda: _conv_pair(strides=[2, 2], auto_pad="SAME_UPPER"),
    lambda: _conv_pair(strides=[2, 1], auto_pad="SAME_LOWER"),
    _gemm_pair, _matmul_pair], ids=["conv-pads-strides-dilations", "conv-same-upper", "conv-same-lower",
                                   "gemm-alpha-beta", "matmul"])
def test_refit_is_exact_when_the_dropped_channel_is_redundant(make):
    model, shape = make()
    analysis = analyse(model)
    (group,) = analysis.prunable
    drop = {group.id: [group.width - 1]}
    small = shrink(analysis, drop)
    x = np.random.default_rng(0).standard_normal((64, *shape)).astype(np.float32)
    refitted, summary = refit(analysis, small, drop, x, ridge=0.0)
    assert len(summary.layers) == 1 and summary.layers[0].error_after < 1e-9 < summary.layers[0].error_before
    dense = _outputs(analysis.model, x)
    np.testing.assert_allclose(_outputs(refitted, x), dense, atol=1e-4 * np.abs(dense).max())


def test_bad_inputs_get_one_sentence(pruned, digits):
    analysis, drop, small, *_ = pruned
    x, y = _arrays(digits.test)
    with pytest.raises(InputError, match="not floating point"):
        refit(analysis, small, drop, x.astype(np.int64))
    with pytest.raises(InputError, match="ridge must be"):
        refit(analysis, small, drop, x, ridge=-1.0)
    with pytest.raises(InputError, match="labels"):
        onnx_accuracy(small, x, y[:-1])
    with pytest.raises(InputError, match="ONNX Runtime could not run"):
        onnx_accuracy(small, x[:, :, :4], y)
    with pytest.raises(InputError, match="not the analysed model"):
        refit(analysis, _gemm_pair()[0], drop, x)
