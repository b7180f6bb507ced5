"""Family-specific checks: torchvision compatibility (parameter counts and keys), the
small-input layouts, initialisation, and the ONNX ops the zoo exports to."""
from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

from deploypipe.models import create_model, list_models, model_info

TINY = [n for n in list_models(include_test=True) if model_info(n).test]


def on_meta(name: str, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return create_model(name, **kwargs)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# torchvision.models.<name>(num_classes=1000) parameter counts.
TORCHVISION_PARAMS = {"resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
                      "mobilenet_v2": 3_504_872, "vgg11_bn": 132_868_840,
                      "vgg16_bn": 138_365_992}
# (key, shape) samples from torchvision's state_dicts at 1000 classes, 3x224x224.
TORCHVISION_KEYS = {
    "resnet18": {"conv1.weight": (64, 3, 7, 7), "layer4.1.bn2.running_var": (512,),
                 "layer2.0.downsample.0.weight": (128, 64, 1, 1), "fc.weight": (1000, 512)},
    "resnet50": {"layer1.0.downsample.1.running_mean": (256,),
                 "layer2.0.conv2.weight": (128, 128, 3, 3),
                 "layer4.2.conv3.weight": (2048, 512, 1, 1), "fc.weight": (1000, 2048)},
    "mobilenet_v2": {"features.0.0.weight": (32, 3, 3, 3), "features.1.conv.1.weight": (16, 32, 1, 1),
                     "features.2.conv.1.0.weight": (96, 1, 3, 3),
                     "features.17.conv.3.running_var": (320,),
                     "features.18.0.weight": (1280, 320, 1, 1), "features.18.1.weight": (1280,),
                     "classifier.1.weight": (1000, 1280)},
    "vgg11_bn": {"features.25.weight": (512, 512, 3, 3), "features.26.running_var": (512,),
                 "classifier.6.bias": (1000,)},
    "vgg16_bn": {"features.40.bias": (512,), "features.41.running_mean": (512,),
                 "classifier.0.weight": (4096, 25088), "classifier.3.weight": (4096, 4096)},
}


@pytest.mark.parametrize("name,count", sorted(TORCHVISION_PARAMS.items()))
def test_torchvision_parameter_counts(name, count):
    assert n_params(on_meta(name, num_classes=1000, in_channels=3)) == count


@pytest.mark.parametrize("name", sorted(TORCHVISION_KEYS))
def test_torchvision_key_samples(name):
    state = on_meta(name).state_dict()
    assert {k: tuple(state[k].shape) for k in TORCHVISION_KEYS[name] if k in state} == \
        TORCHVISION_KEYS[name]


def test_cifar_resnets_have_6n_plus_2_layers_and_option_b_shortcuts():
    for name, n in (("resnet20", 3), ("resnet32", 5), ("resnet56", 9), ("resnet110", 18)):
        model = on_meta(name)
        convs = [k for k, m in model.named_modules() if isinstance(m, nn.Conv2d)]
        assert len([k for k in convs if "downsample" not in k]) + 1 == 6 * n + 2
        assert [k for k in convs if "downsample" in k] == ["layer2.0.downsample.0",
                                                           "layer3.0.downsample.0"]
    assert n_params(on_meta("resnet20")) == 269_722 + 2_752  # paper's option A + projections


def test_resnet_stem_follows_input_size_and_keeps_keys():
    small, large = on_meta("resnet18", input_size=28), on_meta("resnet18", input_size=64)
    assert small.conv1.weight.shape == (64, 3, 3, 3) and isinstance(small.maxpool, nn.Identity)
    assert large.conv1.weight.shape == (64, 3, 7, 7) and isinstance(large.maxpool, nn.MaxPool2d)
    assert small.state_dict().keys() == large.state_dict().keys()
    assert small.deploypipe_arch["kwargs"]["stem"] == "auto"


def test_mobilenet_small_input_reduces_the_two_first_strides():
    small, large = on_meta("mobilenet_v2", input_size=32), on_meta("mobilenet_v2")
    strides = lambda m: [m.features[0][0].stride, m.features[2].conv[1][0].stride,  # noqa: E731
                         m.features[4].conv[1][0].stride]
    assert strides(small) == [(1, 1), (1, 1), (2, 2)]
    assert strides(large) == [(2, 2), (2, 2), (2, 2)]
    assert {k: v.shape for k, v in small.state_dict().items()} == \
        {k: v.shape for k, v in large.state_dict().items()}


def test_mobilenet_width_mult_rounds_to_multiples_of_8():
    model = on_meta("mobilenet_v2", width_mult=0.35)
    widths = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all(w % 8 == 0 for w in widths) and widths[0] == 16 and widths[-1] == 1280


def test_tiny_mobilenet_has_residuals_and_a_strided_depthwise_conv():
    model = on_meta("test_mobilenet_v2")
    blocks = [m for m in model.features if hasattr(m, "use_res_connect")]
    strided_dw = [m for m in model.modules() if isinstance(m, nn.Conv2d)
                  and m.groups == m.in_channels > 1 and m.stride == (2, 2)]
    assert len(blocks) == 5 and sum(b.use_res_connect for b in blocks) == 2
    assert len(strided_dw) == 1


@pytest.mark.parametrize("size,layout,flat", [(224, "imagenet", 25088), (448, "imagenet", 25088),
                                              (64, "compact", 2048), (32, "compact", 512),
                                              (8, "compact", 512)])
def test_vgg_layout_follows_the_final_map(size, layout, flat):
    model = on_meta("vgg16_bn", input_size=size)
    assert model.classifier[0].in_features == flat
    assert len(model.classifier) == (7 if layout == "imagenet" else 3)
    pooled = isinstance(model.avgpool, nn.AdaptiveAvgPool2d)
    assert pooled == (size == 448)  # at 224 the map already is 7x7
    y = model.eval()(torch.empty(1, 3, size, size, device="meta"))
    assert tuple(y.shape) == (1, 1000)


def test_vgg_skips_pools_that_would_empty_the_map_without_shifting_keys():
    tiny, cifar = on_meta("vgg11_bn", input_size=8), on_meta("vgg11_bn", input_size=32)
    kinds = lambda m: [type(layer).__name__ for layer in m.features]  # noqa: E731
    assert kinds(cifar).count("MaxPool2d") == 5
    assert kinds(tiny).count("MaxPool2d") == 3 and kinds(tiny).count("Identity") == 2
    assert tiny.state_dict().keys() == cifar.state_dict().keys()


def test_vgg_imagenet_classifier_can_be_forced_on_small_inputs():
    model = on_meta("test_vgg", input_size=64, classifier="imagenet")
    assert isinstance(model.avgpool, nn.AdaptiveAvgPool2d)
    assert tuple(model(torch.empty(2, 3, 64, 64, device="meta")).shape) == (2, 10)


@pytest.mark.parametrize("name,size,kwargs", [("test_resnet", 64, {}),
                                               ("test_resnet_bottleneck", 64, {}),
                                               ("test_mobilenet_v2", 64, {}),
                                               ("test_vgg", 112, {}),
                                               ("test_vgg", 64, {"classifier": "imagenet"})])
def test_imagenet_layouts_compute_on_tiny_variants(name, size, kwargs):
    model = create_model(name, input_size=size, **kwargs).eval()
    with torch.no_grad():
        y = model(torch.randn(2, 3, size, size))
    assert y.shape == (2, 10) and torch.isfinite(y).all()
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.stride == (2, 2) or len(model.classifier) == 7


def test_he_initialisation():
    model = create_model("vgg11_bn", input_size=32)
    conv = model.features[8]  # 256 -> 256, fan_out = 256 * 9
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (256 * 9)), rel=0.05)
    assert torch.all(conv.bias == 0)
    bn = model.features[9]
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
    assert model.classifier[0].weight.std().item() == pytest.approx(0.01, rel=0.05)


@pytest.mark.parametrize("name", TINY)
def test_tiny_variants_export_to_plain_onnx_ops(name):
    onnx = pytest.importorskip("onnx")
    model = create_model(name).eval()
    buf = io.BytesIO()
    torch.onnx.export(model, (torch.randn(1, *model_info(name).default_input),), buf,
                      dynamo=False, do_constant_folding=False)
    ops = {node.op_type for node in onnx.load_from_string(buf.getvalue()).graph.node}
    plain = {"Conv", "BatchNormalization", "Relu", "Clip", "Add", "MaxPool",
             "GlobalAveragePool", "Flatten", "Gemm", "Identity", "Constant"}
    assert {"Conv", "BatchNormalization", "Flatten", "Gemm"} <= ops <= plain
