"""A tiny exported ONNX model shared by the measurement tests."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory):
    """test_resnet_cifar exported with a dynamic batch: 9 Conv+BN, 3 stages, a Gemm."""
    from deploypipe.export import export_onnx
    from deploypipe.models import create_model

    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    export_onnx(create_model("test_resnet_cifar"), path, input_shape=(1, 3, 32, 32))
    return path


@pytest.fixture(scope="session")
def fixed_batch_onnx(tmp_path_factory):
    from deploypipe.export import export_onnx
    from deploypipe.models import create_model

    path = tmp_path_factory.mktemp("onnx") / "fixed.onnx"
    export_onnx(create_model("test_resnet_cifar"), path, input_shape=(2, 3, 32, 32),
                dynamic_batch=False)
    return path
