"""Checkpoints: weights-only round trip, every accepted format, refusal of pickled code
(proved by a marker file that must not appear), resizing to pruned widths, bad files."""
from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from deploypipe.checkpoint import FORMAT, layer_widths, load_model, save_checkpoint
from deploypipe.errors import InputError
from deploypipe.models import create_model
from deploypipe.models.resize import resize_to_state_dict

X = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = create_model("test_resnet_cifar", num_classes=7, in_channels=1, input_size=8)
    with torch.no_grad():  # non-trivial BN statistics, so eval mode matters
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- round trip -------------------------------------------------------------------------

def test_round_trip_is_weights_only_and_exact(tmp_path):
    model, path = _model(), tmp_path / "m.pt"
    save_checkpoint(path, model, metadata={"input_shape": (1, 8, 8), "test_acc": 0.9, "tags": ["a"]})
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == FORMAT and raw["arch"] == "test_resnet_cifar"
    assert raw["arch_kwargs"]["num_classes"] == 7 and raw["widths"]["layer2.0.conv1"] == {"in": 4, "out": 8, "groups": 1}
    assert set(raw) == {"format", "arch", "arch_kwargs", "widths", "state_dict", "metadata"}
    before = _sha(path)
    loaded = load_model(path)
    assert _sha(path) == before  # the input is never modified
    assert loaded.source_format == "deploypipe" and not loaded.model.training
    assert loaded.input_shape == (1, 8, 8) and loaded.num_classes == 7
    assert loaded.metadata["test_acc"] == 0.9 and loaded.metadata["tags"] == ["a"]
    assert torch.equal(loaded.model(X), model(X))
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary left behind


def test_metadata_that_would_need_pickle_is_refused(tmp_path):
    with pytest.raises(InputError, match=r"metadata\.when holds a \w*Path"):
        save_checkpoint(tmp_path / "m.pt", _model(), metadata={"when": Path("/")})
    assert not (tmp_path / "m.pt").exists()


def test_save_needs_an_arch_for_a_model_outside_the_zoo(tmp_path):
    with pytest.raises(InputError, match="needs the architecture name"):
        save_checkpoint(tmp_path / "m.pt", nn.Linear(2, 2))


def test_layer_widths_cover_grouped_convs():
    widths = layer_widths(nn.Sequential(nn.Conv2d(4, 8, 3, groups=4), nn.BatchNorm2d(8), nn.PReLU(8)))
    assert widths == {"0": {"in": 4, "out": 8, "groups": 4}, "1": {"in": 8, "out": 8, "groups": 1},
                      "2": {"in": 8, "out": 8, "groups": 1}}


# -- other formats ------------------------------------------------------------------------

def test_plain_state_dict_with_zoo_arch_infers_classes_and_channels(tmp_path):
    model, path = _model(), tmp_path / "sd.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}, "epoch": 3}, path)
    loaded = load_model(path, arch="test_resnet_cifar", arch_kwargs={"input_size": 8})
    assert loaded.source_format == "state_dict" and loaded.num_classes == 7
    assert loaded.arch_kwargs["in_channels"] == 1 and loaded.input_shape == (1, 8, 8)
    assert torch.equal(loaded.model(X), model(X))


def test_state_dict_without_arch_asks_for_it(tmp_path):
    torch.save(_model().state_dict(), tmp_path / "sd.pt")
    with pytest.raises(InputError, match="plain state_dict.*pass --arch"):
        load_model(tmp_path / "sd.pt")


def test_state_dict_of_another_arch_names_the_keys(tmp_path):
    torch.save(_model().state_dict(), tmp_path / "sd.pt")
    with pytest.raises(InputError, match=r"key\(s\) missing from the file \(layer1\.1\.conv1\.weight") as info:
        load_model(tmp_path / "sd.pt", arch="resnet20")
    assert "--arch" in info.value.sentence() and "\n" not in info.value.sentence()


def test_user_factory_from_the_current_folder(tmp_path, monkeypatch):
    (tmp_path / "my_nets_ckpt.py").write_text(textwrap.dedent("""
        from torch import nn
        class Scaled(nn.Module):
            def __init__(self, width=3):
                super().__init__()
                self.fc = nn.Linear(2, width)
                self.scale = nn.Parameter(nn.init.ones_(__import__("torch").empty(width)))
            def forward(self, x):
                return self.fc(x) * self.scale
        def build(num_classes=3):
            return Scaled(num_classes)
    """))
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    from importlib import import_module

    path = tmp_path / "sd.pt"
    sd = {"fc.weight": torch.randn(5, 2), "fc.bias": torch.randn(5), "scale": torch.randn(5)}
    torch.save(sd, path)
    loaded = load_model(path, arch="my_nets_ckpt:build")
    assert loaded.num_classes == 5 and loaded.arch == "my_nets_ckpt:build"
    ref = import_module("my_nets_ckpt").Scaled(5)
    ref.load_state_dict(sd)
    x = torch.randn(4, 2)
    assert torch.equal(loaded.model(x), ref(x))
    torch.save({**sd, "scale": torch.randn(6)}, path)
    with pytest.raises(InputError, match=r"1 tensor shape\(s\) differ \(scale saved \(6,\) vs model \(5,\)\)"):
        load_model(path, arch="my_nets_ckpt:build")


def test_torchscript_and_export_programs(tmp_path):
    model = _model()
    torch.jit.save(torch.jit.trace(model, X), tmp_path / "ts.pt")
    torch.export.save(torch.export.export(model, (X,)), tmp_path / "m.pt2")
    ts, ep = load_model(tmp_path / "ts.pt"), load_model(tmp_path / "m.pt2")
    assert ts.source_format == "torchscript" and torch.allclose(ts.model(X), model(X), atol=1e-6)
    assert ep.source_format == "torch.export" and ep.input_shape == (1, 8, 8) and ep.num_classes == 7
    assert torch.allclose(ep.model(X), model(X), atol=1e-6)


def test_checkpoint_naming_code_outside_the_zoo_needs_explicit_arch(tmp_path):
    path = tmp_path / "m.pt"
    save_checkpoint(path, nn.Linear(2, 2), arch="os:system", arch_kwargs={"command": "touch pwned"})
    with pytest.raises(InputError, match="not in the zoo and would be imported as code.*--arch os:system"):
        load_model(path)


# -- pickled code is refused ----------------------------------------------------------------

def _touch_and_build(marker: str) -> nn.Module:
    Path(marker).touch()
    return nn.Linear(2, 2)


class MarkerNet(nn.Module):
    """A module whose unpickling creates a file: proof of code execution."""

    def __init__(self, marker: str):
        super().__init__()
        self.marker = marker
        self.fc = nn.Linear(2, 2)

    def __reduce__(self):
        return (_touch_and_build, (self.marker,))


def test_pickled_module_is_refused_and_its_code_never_runs(tmp_path):
    marker, path = tmp_path / "code_ran", tmp_path / "model.pt"
    torch.save(MarkerNet(str(marker)), path)
    assert not marker.exists()
    with pytest.raises(InputError) as info:
        load_model(path)
    text = info.value.sentence()
    assert "would run code from the file" in text and "--trust-model" in text and "\n" not in text
    assert not marker.exists()
    loaded = load_model(path, trust_model=True)  # the user accepts: the code runs
    assert marker.exists() and loaded.source_format == "pickled_module"


def test_pickled_function_inside_a_dict_is_refused(tmp_path):
    marker, path = tmp_path / "code_ran", tmp_path / "ckpt.pt"
    torch.save({"state_dict": _model().state_dict(), "extra": MarkerNet(str(marker))}, path)
    with pytest.raises(InputError, match="pickled Python object.*--trust-model"):
        load_model(path, arch="test_resnet_cifar")
    assert not marker.exists()


# -- bad files -------------------------------------------------------------------------------

def _bad_files(tmp: Path) -> dict[str, tuple[Path, str]]:
    good = tmp / "good.pt"
    save_checkpoint(good, _model())
    data = good.read_bytes()
    files = {"empty": (b"", "is empty"), "truncated": (data[: len(data) // 2], "truncated or corrupt"),
             "random": (bytes(range(256)) * 8, "corrupt or not a PyTorch file"),
             "onnx": (b"\x08\x07", "is an ONNX model")}
    out = {}
    for name, (content, match) in files.items():
        path = tmp / (f"{name}.onnx" if name == "onnx" else f"{name}.pt")
        path.write_bytes(content)
        out[name] = (path, match)
    out["folder"] = (tmp, "is a folder")
    out["missing"] = (tmp / "nope.pt", "does not exist")
    return out


@pytest.mark.parametrize("case", ["empty", "truncated", "random", "onnx", "folder", "missing"])
def test_bad_files_are_one_sentence_input_errors(tmp_path, case):
    path, match = _bad_files(tmp_path)[case]
    before = _sha(path) if path.is_file() else None
    with pytest.raises(InputError, match=match) as info:
        load_model(path)
    assert "\n" not in info.value.sentence()
    assert before is None or _sha(path) == before


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused(tmp_path, value):
    model = _model()
    with torch.no_grad():
        model.layer1[0].conv2.weight[0, 0, 0, 0] = value
    save_checkpoint(tmp_path / "m.pt", model)
    with pytest.raises(InputError, match=r"has 1 NaN or infinite value in 'layer1\.0\.conv2\.weight'"):
        load_model(tmp_path / "m.pt")


# -- pruned widths ---------------------------------------------------------------------------

def _prune(dense: nn.Module, sd: dict[str, torch.Tensor], producers: list[str], consumer: str,
           keep: torch.Tensor) -> None:
    """Slice channels ``keep`` out of the ``producers`` (output axis; depthwise convs and
    BNs included) and out of the input axis of ``consumer`` in ``sd``; zero the dropped
    inputs of ``consumer`` in ``dense``, which then computes what the pruned model must."""
    for prefix in producers:
        for key in [k for k in sd if k.startswith(prefix + ".") and sd[k].dim() > 0]:
            sd[key] = sd[key][keep]
    sd[f"{consumer}.weight"] = sd[f"{consumer}.weight"][:, keep]
    dropped = torch.ones(dense.get_submodule(consumer).weight.shape[1], dtype=torch.bool)
    dropped[keep] = False
    with torch.no_grad():
        dense.get_submodule(consumer).weight[:, dropped] = 0


def test_resize_rebuilds_a_channel_pruned_resnet(tmp_path):
    dense = _model()
    sd = {k: v.clone() for k, v in dense.state_dict().items()}
    _prune(dense, sd, ["layer1.0.conv1", "layer1.0.bn1"], "layer1.0.conv2", torch.tensor([0, 2, 3]))
    _prune(dense, sd, ["layer2.0.conv1", "layer2.0.bn1"], "layer2.0.conv2", torch.tensor([0, 1, 4, 5, 7]))
    fresh = create_model("test_resnet_cifar", num_classes=7, in_channels=1, input_size=8)
    resized = resize_to_state_dict(fresh, sd)
    assert sorted(resized) == sorted(["layer1.0.conv1", "layer1.0.bn1", "layer1.0.conv2",
                                      "layer2.0.conv1", "layer2.0.bn1", "layer2.0.conv2"])
    fresh.load_state_dict(sd)
    fresh.eval()
    assert fresh.layer1[0].conv1.out_channels == 3 and fresh.layer2[0].conv2.in_channels == 5
    assert torch.allclose(fresh(X), dense(X), atol=1e-5)
    # and through a checkpoint: the widths are saved and the loader rebuilds them
    save_checkpoint(tmp_path / "pruned.pt", fresh, metadata={"input_shape": [1, 8, 8]})
    loaded = load_model(tmp_path / "pruned.pt")
    assert set(loaded.resized) == set(resized)
    assert torch.load(tmp_path / "pruned.pt", weights_only=True)["widths"]["layer1.0.conv1"]["out"] == 3
    assert torch.allclose(loaded.model(X), dense(X), atol=1e-5)


def test_resize_follows_depthwise_groups_in_mobilenet():
    torch.manual_seed(0)
    dense = create_model("test_mobilenet_v2", num_classes=5, in_channels=3, input_size=32).eval()
    sd = {k: v.clone() for k, v in dense.state_dict().items()}
    hidden = ["features.2.conv.0.0", "features.2.conv.0.1", "features.2.conv.1.0", "features.2.conv.1.1"]
    _prune(dense, sd, hidden, "features.2.conv.2", torch.arange(0, 24, 2))  # half of 24 hidden channels
    fresh = create_model("test_mobilenet_v2", num_classes=5, in_channels=3, input_size=32)
    resize_to_state_dict(fresh, sd)
    fresh.load_state_dict(sd)
    dw = fresh.features[2].conv[1][0]
    assert dw.groups == dw.in_channels == dw.out_channels == 12
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(fresh.eval()(x), dense(x), atol=1e-5)


def test_resize_handles_linear_prelu_transposed_and_grouped():
    """Grouped convs lose whole groups, as channel surgery removes them: the channels per
    group stay and ``groups`` follows (4 groups of 2 in / 3 out -> 3 groups)."""
    model = nn.Sequential(nn.Conv2d(8, 12, 3, groups=4), nn.PReLU(12), nn.ConvTranspose2d(12, 8, 2, groups=4),
                          nn.Flatten(), nn.Linear(8, 3))
    sd = {"0.weight": torch.zeros(9, 2, 3, 3), "0.bias": torch.zeros(9), "1.weight": torch.zeros(9),
          "2.weight": torch.zeros(9, 2, 2, 2), "2.bias": torch.zeros(6), "4.weight": torch.zeros(3, 6),
          "4.bias": torch.zeros(3)}
    assert resize_to_state_dict(model, sd) == ["0", "1", "2", "4"]
    model.load_state_dict(sd)
    assert (model[0].in_channels, model[0].out_channels, model[0].groups) == (6, 9, 3)
    assert (model[2].in_channels, model[2].out_channels, model[2].groups) == (9, 6, 3)
    assert model[1].num_parameters == 9 and model[4].in_features == 6


def test_widths_that_do_not_fit_together_are_refused(tmp_path):
    model = _model()
    sd = model.state_dict()
    sd["layer1.0.conv2.weight"] = sd["layer1.0.conv2.weight"][:, :3]  # consumer pruned, producer not
    torch.save(sd, tmp_path / "sd.pt")
    with pytest.raises(InputError, match="do not fit together"):
        load_model(tmp_path / "sd.pt", arch="test_resnet_cifar", arch_kwargs={"input_size": 8})
