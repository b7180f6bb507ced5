"""Registry-wide checks: every registered model (tiny test variants included) builds,
runs at its default input and at MNIST size, and rebuilds from ``deploypipe_arch``."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from deploypipe.errors import InputError
from deploypipe.models import ModelInfo, create_model, list_models, model_info, register_model
from deploypipe.models._registry import MODELS

ALL = list_models(include_test=True)
TINY = [n for n in ALL if model_info(n).test]
# sklearn's digits are 1x8x8: the tiny variants and the CIFAR ResNets must take them.
DIGITS = sorted(set(TINY) | {n for n in ALL if model_info(n).family == "resnet_cifar"})
STANDARD_LEAVES = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.Linear, nn.MaxPool2d,
                   nn.AdaptiveAvgPool2d, nn.Dropout, nn.Identity)


def on_meta(name: str, **kwargs) -> nn.Module:
    """Build without allocating or initialising weights: shapes and counts only."""
    with torch.device("meta"):
        return create_model(name, **kwargs)


def shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def one_sentence(msg: str) -> bool:
    return "\n" not in msg and msg.endswith((".", "?")) and ". " not in msg


def test_list_models_hides_test_variants_unless_asked():
    public = list_models()
    assert public == sorted(public)
    assert {"resnet20", "resnet56", "resnet18", "resnet50", "mobilenet_v2",
            "vgg16_bn"} <= set(public)
    assert not any(model_info(n).test for n in public)
    assert set(TINY) == set(ALL) - set(public)
    assert {"test_resnet_cifar", "test_resnet", "test_resnet_bottleneck",
            "test_mobilenet_v2", "test_vgg"} <= set(TINY)


@pytest.mark.parametrize("name", ALL)
def test_model_info_is_complete(name):
    info = model_info(name)
    assert isinstance(info, ModelInfo) and info.name == name
    assert info.family and info.description and callable(info.factory)
    assert len(info.default_input) == 3 and info.default_classes >= 1


@pytest.mark.parametrize("name", ALL)
def test_output_shape_at_default_input(name):
    info = model_info(name)
    model = on_meta(name).eval()
    y = model(torch.empty(2, *info.default_input, device="meta"))
    assert tuple(y.shape) == (2, info.default_classes)


@pytest.mark.parametrize("name", TINY)
def test_forward_at_default_input(name):
    """Numbers, not only shapes; the full-size models compute for real at MNIST size."""
    info = model_info(name)
    model = create_model(name).eval()
    with torch.no_grad():
        y = model(torch.randn(2, *info.default_input))
    assert y.shape == (2, info.default_classes) and torch.isfinite(y).all()


@pytest.mark.parametrize("name", ALL)
def test_forward_at_mnist_size(name):
    model = create_model(name, in_channels=1, input_size=28, num_classes=10).eval()
    with torch.no_grad():
        y = model(torch.randn(1, 1, 28, 28))
    assert y.shape == (1, 10) and torch.isfinite(y).all()


@pytest.mark.parametrize("name", DIGITS)
def test_forward_at_digits_size(name):
    model = create_model(name, in_channels=1, input_size=8, num_classes=10).eval()
    with torch.no_grad():
        y = model(torch.randn(3, 1, 8, 8))
    assert y.shape == (3, 10) and torch.isfinite(y).all()


@pytest.mark.parametrize("name", ALL)
def test_arch_record_rebuilds_the_same_architecture(name):
    model = on_meta(name, in_channels=1, input_size=(28, 28), num_classes=7)
    arch = json.loads(json.dumps(model.deploypipe_arch))  # as a checkpoint would store it
    assert arch["name"] == name
    assert {"num_classes", "in_channels", "input_size"} <= set(arch["kwargs"])
    rebuilt = on_meta(arch["name"], **arch["kwargs"])
    assert shapes(rebuilt) == shapes(model)
    assert repr(rebuilt) == repr(model)  # strides and pools too, not only parameters
    assert rebuilt.deploypipe_arch == arch


@pytest.mark.parametrize("name", ALL)
def test_only_standard_modules_and_no_inplace(name):
    model = on_meta(name)
    leaves = [m for m in model.modules() if not list(m.children())]
    assert all(isinstance(m, STANDARD_LEAVES) for m in leaves)
    assert not any(getattr(m, "inplace", False) for m in leaves)


@pytest.mark.parametrize("name", TINY)
def test_each_activation_module_runs_once(name):
    """Pruning hooks count on one call per module per forward: no shared ReLU."""
    model = create_model(name).eval()
    calls: dict[str, int] = {}
    for mod_name, m in model.named_modules():
        if isinstance(m, (nn.ReLU, nn.ReLU6)):
            m.register_forward_hook(lambda *_, key=mod_name: calls.__setitem__(
                key, calls.get(key, 0) + 1))
    with torch.no_grad():
        model(torch.randn(1, *model_info(name).default_input))
    assert calls and set(calls.values()) == {1}


def test_family_arguments_are_recorded_and_honoured():
    model = on_meta("mobilenet_v2", width_mult=0.5, stem="imagenet", input_size=64)
    assert model.deploypipe_arch["kwargs"]["width_mult"] == 0.5
    assert model.deploypipe_arch["kwargs"]["stem"] == "imagenet"
    assert model.deploypipe_arch["kwargs"]["input_size"] == [64, 64]
    rebuilt = on_meta("mobilenet_v2", **model.deploypipe_arch["kwargs"])
    assert repr(rebuilt) == repr(model)


def test_input_size_accepts_n_hw_and_chw():
    sizes = [on_meta("test_vgg", input_size=s).deploypipe_arch["kwargs"]["input_size"]
             for s in (16, (16, 16), [3, 16, 16], np.int64(16))]
    assert sizes == [[16, 16]] * 4


def test_numpy_integers_are_recorded_as_plain_ints():
    kwargs = on_meta("test_vgg", num_classes=np.int64(5)).deploypipe_arch["kwargs"]
    assert kwargs["num_classes"] == 5 and type(kwargs["num_classes"]) is int


BAD_KWARGS = [
    ("test_resnet_cifar", dict(num_classes=0), "num_classes"),
    ("test_resnet_cifar", dict(num_classes=2.5), "num_classes"),
    ("test_resnet_cifar", dict(in_channels=-1), "in_channels"),
    ("test_resnet_cifar", dict(input_size=(0, 32)), "input_size"),
    ("test_resnet_cifar", dict(input_size=(1, 2, 3, 4)), "input_size"),
    ("test_resnet_cifar", dict(width=3), "width"),
    ("resnet20", dict(input_size=2), "2x2"),
    ("resnet18", dict(input_size=16, stem="imagenet"), "16x16"),
    ("resnet18", dict(stem="tiny"), "stem"),
    ("mobilenet_v2", dict(width_mult=0), "width_mult"),
    ("mobilenet_v2", dict(width_mult=float("nan")), "width_mult"),
    ("mobilenet_v2", dict(input_size=4), "4x4"),
    ("vgg11_bn", dict(classifier="big"), "classifier"),
]


@pytest.mark.parametrize("name,kwargs,fragment", BAD_KWARGS)
def test_bad_arguments_raise_one_sentence(name, kwargs, fragment):
    with pytest.raises(InputError) as err:
        on_meta(name, **kwargs)
    msg = str(err.value)
    assert fragment in msg and one_sentence(msg), msg


def test_unknown_model_suggests_close_names():
    with pytest.raises(InputError, match="did you mean.*resnet20") as err:
        create_model("resnet2")
    assert one_sentence(str(err.value))


def test_register_model_adds_a_buildable_family(monkeypatch):
    monkeypatch.setattr(MODELS, "_items", dict(MODELS._items))  # undone after the test

    @register_model(family="toy", default_input=(1, 4, 4), default_classes=3, test=True)
    def toy_linear(*, num_classes: int, in_channels: int, input_size, bias: bool = True):
        """A linear classifier.

        More detail that the description leaves out."""
        h, w = input_size
        return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * h * w, num_classes, bias))

    info = model_info("toy_linear")
    assert (info.family, info.description, info.test) == ("toy", "A linear classifier.", True)
    model = create_model("toy_linear")
    assert model(torch.randn(2, 1, 4, 4)).shape == (2, 3)
    assert model.deploypipe_arch == {"name": "toy_linear", "kwargs": {
        "num_classes": 3, "in_channels": 1, "input_size": [4, 4], "bias": True}}
    with pytest.raises(ValueError):
        register_model("toy_linear", family="toy")(toy_linear)
