"""Target profiles: the shipped ones load, a user's file works, every mistake is one
sentence naming the file and the field."""
from __future__ import annotations

import dataclasses
import re
import textwrap

import pytest

from deploypipe.errors import InputError
from deploypipe.targets import TargetProfile, list_targets, load_target, profiles_dir
from deploypipe.targets.loader import shipped_names

SHIPPED = ["cpu", "cpu-batch32", "cpu-int8", "gpu", "gpu-trt-fp16", "gpu-trt-int8", "jetson-orin", "torch-cuda"]


def _one_sentence(msg: str) -> bool:
    return "\n" not in msg and msg.endswith(".") and not re.search(r"[.!?]\s+[A-Z]", msg)


def _write(tmp_path, text: str, name: str = "mine.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_all_shipped_profiles_are_there():
    assert set(SHIPPED) <= set(shipped_names())
    assert [t.name for t in list_targets()] == sorted(shipped_names())


# ids spelled out: tests/conftest.py skips any test with a bare "gpu" keyword
@pytest.mark.parametrize("name", SHIPPED, ids=lambda n: f"profile-{n}")
def test_shipped_profile_loads(name):
    t = load_target(name)
    assert t.name == name and t.description
    assert t.round_to >= 1 and t.iterations >= 1
    assert t.requires_gpu == (name not in ("cpu", "cpu-batch32", "cpu-int8"))
    assert t.source and t.source.endswith(f"{name}.toml")


def test_shipped_values():
    cpu, b32 = load_target("cpu"), load_target("cpu-batch32")
    assert (cpu.backend, cpu.providers, cpu.batch, cpu.round_to) == (
        "onnxruntime", ("CPUExecutionProvider",), 1, 8)
    assert (b32.batch, b32.threads) == (32, 1)
    gpu = load_target("gpu")
    assert gpu.auto and gpu.backend is None and gpu.device == "cuda"
    assert load_target("gpu-trt-int8").round_to == 32
    assert (load_target("gpu-trt-fp16").backend, load_target("gpu-trt-fp16").precision) == (
        "tensorrt", "fp16")
    assert load_target("torch-cuda").backend == "torch"


def test_profiles_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        load_target("cpu").batch = 8  # type: ignore[misc]


def test_user_file_by_path(tmp_path):
    path = _write(tmp_path, """
        description = "my server"
        threads = 4
        batch = 8
        input_shape = [3, 64, 64]
        same_speed_margin = 0.08
        [tolerances]
        atol = 1e-3
        """, name="server.toml")
    t = load_target(str(path))
    assert t.name == "server"  # from the file name
    assert (t.threads, t.batch, t.input_shape, t.tolerances.atol) == (4, 8, (3, 64, 64), 1e-3)
    assert t.same_speed_margin == 0.08 and load_target("cpu").same_speed_margin == 0.03
    assert t.tolerances.rtol == 1e-3 and t.providers == ("CPUExecutionProvider",)
    assert not t.requires_gpu


def test_derived_gpu_need(tmp_path):
    t = load_target(str(_write(tmp_path, """
        providers = ["TensorrtExecutionProvider", "CUDAExecutionProvider"]
        device = "cuda"
        precision = "fp16"
        """)))
    assert t.requires_gpu and t.backend == "onnxruntime"


@pytest.mark.parametrize("text, field", [
    ("batchh = 4", "batchh"),
    ('batch = "a"', "batch"),
    ("batch = 0", "batch"),
    ("threads = true", "threads"),
    ('precision = "fp8"', "precision"),
    ('statistic = "mean"', "statistic"),
    ('backend = "openvino"', "backend"),
    ('providers = "CPUExecutionProvider"', "providers"),
    ('providers = ["CUDA"]\ndevice = "cuda"', "providers"),
    ('providers = ["CUDAExecutionProvider"]', "device"),
    ('backend = "tensorrt"', "device"),
    ('backend = "torch"\ndevice = "cuda"\nproviders = ["CPUExecutionProvider"]', "providers"),
    ('precision = "fp16"', "precision"),  # no fast fp16 kernels on ORT's x86 CPU; int8 is allowed
    ('auto = true\nbackend = "tensorrt"', "backend"),
    ('auto = true\ndevice = "cpu"', "device"),
    ('device = "cuda"\nrequires_gpu = false', "requires_gpu"),
    ("input_shape = [3, 0]", "input_shape"),
    ("round_to = 1.5", "round_to"),
    ("[tolerances]\natol = -1", "tolerances.atol"),
    ("[tolerances]\nmargin = 1", "tolerances.margin"),
    ("tolerances = 3", "tolerances"),
    ("same_speed_margin = 0.5", "same_speed_margin"),
    ("same_speed_margin = -0.01", "same_speed_margin"),
    ("same_speed_margin = nan", "same_speed_margin"),
    ("[tolerances]\natol = nan", "tolerances.atol"),
])
def test_validation_error_is_one_sentence_naming_the_field(tmp_path, text, field):
    path = _write(tmp_path, text + "\n")
    with pytest.raises(InputError) as err:
        load_target(str(path))
    msg = err.value.sentence()
    assert f"'{field}'" in msg or f"{field} must" in msg, msg
    assert str(path) in msg
    assert _one_sentence(msg), msg


def test_invalid_toml_names_the_file(tmp_path):
    path = _write(tmp_path, "batch = = 3\n")
    with pytest.raises(InputError, match="not valid TOML") as err:
        load_target(str(path))
    assert str(path) in err.value.sentence()


def test_missing_file_and_unknown_name(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_target(str(tmp_path / "absent.toml"))
    with pytest.raises(InputError, match="did you mean cpu"):
        load_target("cpux")


def test_from_mapping_directly():
    t = TargetProfile.from_mapping({"batch": 2}, source="inline", default_name="x")
    assert (t.name, t.batch, t.backend) == ("x", 2, "onnxruntime")
    assert t.to_dict()["providers"] == ["CPUExecutionProvider"]


def test_profiles_dir_holds_the_repository_files():
    assert (profiles_dir() / "cpu.toml").is_file()


def test_cpu_int8_runs_quantized_graphs_on_onnx_runtime():
    t = load_target("cpu-int8")
    assert (t.backend, t.device, t.precision, t.batch, t.threads) == ("onnxruntime", "cpu", "int8", 32, 1)
    assert t.tolerances.atol == load_target("cpu").tolerances.atol  # the fp32 exports' parity, not int8's
