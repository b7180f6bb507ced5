"""The bad-input matrix (issue 11): every case goes through the CLI and must give one
sentence naming the problem and the fix, exit code 2, no traceback, and leave every input
byte-identical."""
from __future__ import annotations

import errno
import os
import pickle
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from deploypipe.cli import main
from deploypipe.testing.graphs import build_cnn, random_spec
from deploypipe.utils.files import sha256_file

MARKER = Path("/tmp/deploypipe-bad-input-marker")
QUICK = ["--limit", "200", "--epochs", "1", "--profile-iterations", "3"]


class Payload:
    """A pickle whose loading would create MARKER: it must never run."""

    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    ckpt = d / "model.pt"
    assert main(["train", "--arch", "test_resnet_cifar", "--dataset", "digits", "--epochs", "1",
                 "--limit", "200", "-o", str(ckpt)]) == 0
    model_onnx = d / "model.onnx"
    onnx.save(build_cnn(random_spec(20)), str(model_onnx))  # prunable groups and a frozen logits group
    return {"dir": d, "ckpt": ckpt, "onnx": model_onnx}


def _case(name, files, tmp):
    """argv and the input files that must stay unchanged, for one case."""
    d, ckpt, model_onnx = files["dir"], files["ckpt"], files["onnx"]
    out = tmp / "out"
    if name == "empty_file":
        p = tmp / "empty.onnx"
        p.write_bytes(b"")
        return ["inspect", p], [p], "empty"
    if name == "truncated_onnx":
        p = tmp / "cut.onnx"
        p.write_bytes(model_onnx.read_bytes()[:300])
        return ["shrink", p, "-o", tmp / "o.onnx", "--ratio", "0.5"], [p], "not a valid ONNX file"
    if name == "random_bytes":
        p = tmp / "noise.pt"
        p.write_bytes(np.random.default_rng(0).bytes(4096))
        return ["export", p, "-o", tmp / "o.onnx"], [p], ""
    if name == "directory_instead_of_file":
        return ["profile", d, "--target", "cpu"], [], "folder"
    if name == "wrong_extension":
        p = tmp / "weights.txt"
        p.write_text("these are not weights")
        return ["build", p, "-o", out, "--dataset", "digits", *QUICK], [p], ""
    if name == "malicious_pickle":
        p = tmp / "evil.pt"
        torch.save({"state_dict": Payload()}, p)
        return ["export", p, "-o", tmp / "o.onnx"], [p], "--trust-model"
    if name == "malicious_raw_pickle":
        p = tmp / "evil.pkl"
        with open(p, "wb") as f:
            pickle.dump({"state_dict": Payload()}, f)
        return ["build", p, "-o", out, "--dataset", "digits", *QUICK], [p], "--trust-model"
    if name == "state_dict_not_matching_arch":
        p = tmp / "sd.pt"
        torch.save({"conv1.weight": torch.zeros(3, 3, 3, 3)}, p)
        return ["export", p, "--arch", "resnet20", "-o", tmp / "o.onnx"], [p], "resnet20"
    if name == "unknown_arch":
        return ["train", "--arch", "resnet9000", "--dataset", "digits", "--epochs", "1", "-o", tmp / "m.pt"], [], "resnet9000"
    if name == "unknown_dataset":
        return ["build", ckpt, "-o", out, "--dataset", "imagenet-22k", *QUICK], [ckpt], "imagenet-22k"
    if name == "unknown_target":
        return ["profile", model_onnx, "--target", "tpu-v9"], [model_onnx], "tpu-v9"
    if name == "unknown_method":
        return ["build", ckpt, "-o", out, "--dataset", "digits", "--method", "vibes", *QUICK], [ckpt], "vibes"
    if name == "missing_data_folder":
        return ["build", ckpt, "-o", out, "--dataset", f"folder:{tmp / 'no-such-folder'}", *QUICK], [ckpt], "no-such-folder"
    if name == "wrong_channel_count":
        from PIL import Image

        root = tmp / "rgb"
        for cls in ("a", "b"):
            (root / cls).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8), "RGB").save(root / cls / f"{i}.png")
        gray = tmp / "gray.pt"
        assert main(["train", "--arch", "test_resnet_cifar", "--dataset", "digits", "--epochs", "1",
                     "--limit", "50", "--in-channels", "1", "-o", str(gray)]) == 0
        return ["build", gray, "-o", out, "--dataset", f"folder:{root}", *QUICK], [gray], "channel"
    if name == "nan_weights":
        state = torch.load(ckpt, weights_only=True)
        key = next(k for k in state["state_dict"] if k.endswith("weight"))
        state["state_dict"][key] = torch.full_like(state["state_dict"][key], float("nan"))
        p = tmp / "nan.pt"
        torch.save(state, p)
        return ["export", p, "-o", tmp / "o.onnx"], [p], "NaN"
    if name == "unsupported_op":
        p = tmp / "custom.onnx"
        node = helper.make_node("FancyConv", ["x"], ["y"], domain="com.example")
        graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])])
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
        m.ir_version = 8
        onnx.save(m, str(p))
        return ["profile", p, "--target", "cpu"], [p], "FancyConv"
    if name == "frozen_group_in_drop":
        from deploypipe.graph import analyse, load_onnx

        frozen = next(g for g in analyse(load_onnx(model_onnx)).groups if g.frozen)
        drop = tmp / "drop.json"
        drop.write_text(f'{{"{frozen.id}": [0]}}')
        return ["shrink", model_onnx, "-o", tmp / "o.onnx", "--drop", drop], [model_onnx, drop], "frozen"
    if name == "impossible_budget":
        return ["build", ckpt, "-o", out, "--dataset", "digits", "--macs-budget", "500x", *QUICK], [ckpt], "budget"
    if name == "latency_budget_below_fastest":
        return ["build", ckpt, "-o", out, "--dataset", "digits", "--latency-budget", "0.000001ms", *QUICK], [ckpt], "fastest"
    if name == "profile_with_wrong_field":
        p = tmp / "mine.toml"
        p.write_text('name = "mine"\nbackend = "onnxruntime"\nbatchsize = 4\n')
        return ["profile", model_onnx, "--target", p], [model_onnx, p], "batchsize"
    if name == "gpu_target_without_gpu":
        return ["build", ckpt, "-o", out, "--dataset", "digits", "--target", "gpu", *QUICK], [ckpt], "GPU"
    if name == "output_in_read_only_folder":
        ro = tmp / "readonly"
        ro.mkdir()
        return ["shrink", model_onnx, "-o", ro / "o.onnx", "--ratio", "0.5"], [model_onnx], "write"
    if name == "output_equal_to_input":
        return ["shrink", model_onnx, "-o", model_onnx, "--ratio", "0.5"], [model_onnx], "input"
    if name == "full_disk":
        return ["shrink", model_onnx, "-o", tmp / "o.onnx", "--ratio", "0.5"], [model_onnx], "space"
    return _case_issue_25(name, files, tmp)


def _nan_onnx(model_onnx: Path, path: Path, value: float) -> Path:
    """A copy of the model with three non-finite values in its first weight."""
    from onnx import numpy_helper

    model = onnx.load(str(model_onnx))
    first = next(t for t in model.graph.initializer if t.data_type == TensorProto.FLOAT and len(t.dims) == 4)
    arr = numpy_helper.to_array(first).copy()
    arr.reshape(-1)[:3] = value
    first.CopyFrom(numpy_helper.from_array(arr, first.name))
    onnx.save(model, str(path))
    return path


def _case_issue_25(name, files, tmp):
    """Non-finite weights and outputs that cannot be written (issue 25)."""
    model_onnx = files["onnx"]
    if name == "nan_onnx_weights":
        p = _nan_onnx(model_onnx, tmp / "nan.onnx", float("nan"))
        return ["shrink", p, "-o", tmp / "o.onnx", "--ratio", "0.3", "--verify"], [p], "3 NaN or infinite values"
    if name == "inf_onnx_weights_profile":
        p = _nan_onnx(model_onnx, tmp / "inf.onnx", float("inf"))
        return ["profile", p, "--target", "cpu", "--json", tmp / "o.json"], [p], "infinite"
    if name == "nan_onnx_weights_build":
        p = _nan_onnx(model_onnx, tmp / "nan.onnx", float("nan"))
        return ["build", p, "-o", tmp / "o.run", "--ratio", "0.3", "--profile-iterations", "3"], [p], "NaN"
    if name == "output_under_proc":
        return ["shrink", model_onnx, "-o", "/proc/deploypipe-out.onnx", "--ratio", "0.5"], [model_onnx], "folder"
    if name == "output_under_a_file":
        return ["shrink", model_onnx, "-o", model_onnx / "o.onnx", "--ratio", "0.5"], [model_onnx], "not a folder"
    if name == "output_is_a_device":
        return ["inspect", model_onnx, "--json", "/dev/full"], [model_onnx], "device"
    if name == "run_folder_under_proc":
        return ["build", model_onnx, "-o", "/proc/deploypipe-run", "--ratio", "0.3"], [model_onnx], "folder"
    return _case_adversarial(name, files, tmp)


def _conv_custom_conv(path: Path, *, ir_version: int = 8, custom: bool = True) -> Path:
    """Conv -> Relu -> Conv -> (an op of a custom domain, or Relu), at the given IR version: the
    channels between the convolutions are prunable."""
    from onnx import numpy_helper

    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((16, 3, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((8, 16, 3, 3)).astype(np.float32), "w2")
    last = helper.make_node("MyOp", ["c"], ["y"], domain="com.foo") if custom else helper.make_node("Relu", ["c"], ["y"])
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("Conv", ["b", "w2"], ["c"], pads=[1, 1, 1, 1]), last]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16, 16])], [w1, w2])
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid("com.foo", 1)] if custom else [])
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = ir_version
    onnx.save(model, str(path))
    return path


def _case_adversarial(name, files, tmp):
    """Found by an adversarial pass over the CLI: tracebacks and a silently dropped option."""
    ckpt, out = files["ckpt"], tmp / "out"
    if name == "shapes_unreadable":
        return ["build", ckpt, "-o", out, "--shapes", "input:[1,3,16"], [ckpt], "cannot read the input shapes"
    if name == "shapes_wrong_input_name":
        return ["build", ckpt, "-o", out, "--shapes", "x:8x3x32x32"], [ckpt], "model's input is 'input'"
    if name == "onnx_custom_op_build":  # the surgery oracle runs the graph before anything is profiled
        p = _conv_custom_conv(tmp / "custom.onnx")
        return ["build", p, "-o", out, "--ratio", "0.3"], [p], "com.foo:MyOp"
    if name == "onnx_ir_version_too_new":
        p = _conv_custom_conv(tmp / "ir99.onnx", ir_version=99, custom=False)
        return ["profile", p, "--target", "cpu"], [p], "IR version 99"
    if name == "no_prunable_group":  # was: exit 0 with nothing removed under --ratio
        p = _conv_custom_conv(tmp / "cumsum.onnx", custom=False)
        model = onnx.load(str(p))
        axis = onnx.numpy_helper.from_array(np.array(1, dtype=np.int64), "axis")
        model.graph.initializer.append(axis)
        model.graph.node[1].CopyFrom(helper.make_node("CumSum", ["a", "axis"], ["b"]))  # mixes channels
        onnx.save(model, str(p))
        return ["build", p, "-o", out, "--ratio", "0.3"], [p], "frozen (CumSum node"
    if name == "onnx_distill":  # was: taken and ignored
        return ["build", files["onnx"], "-o", out, "--ratio", "0.3", "--distill"], [files["onnx"]], "not fine-tuned"
    if name == "onnx_method_arg":
        return ["build", files["onnx"], "-o", out, "--ratio", "0.3", "--method-arg", "steps=3"], [files["onnx"]], \
            "no parameter 'steps'"
    if name == "onnx_epochs":  # was: taken and ignored (an ONNX file is never fine-tuned)
        return ["build", files["onnx"], "-o", out, "--ratio", "0.3", "--epochs", "3"], [files["onnx"]], "not fine-tuned"
    if name == "epochs_without_data":  # was: taken and ignored (nothing to fine-tune on)
        return ["build", ckpt, "-o", out, "--ratio", "0.3", "--epochs", "3"], [ckpt], "none was given"
    if name == "method_needs_data":
        return ["build", ckpt, "-o", out, "--method", "cpli"], [ckpt], "needs training data"
    return _case_other_commands(name, files, tmp)


def _case_other_commands(name, files, tmp):
    """Found by an adversarial pass over the commands other than build: each was exit 0 with an
    input or a fresh result overwritten, or an internal error."""
    model_onnx = files["onnx"]
    if name in ("output_is_the_drop_file", "drop_file_of_floats", "drop_with_seed"):
        drop = tmp / "drop.json"
        drop.write_text('{"0": [1.7]}' if name == "drop_file_of_floats" else '{"0": [0]}')
        out, extra, needle = {"output_is_the_drop_file": (drop, [], "is the input file"),
                              "drop_file_of_floats": (tmp / "o.onnx", [], "integer channel indices"),
                              "drop_with_seed": (tmp / "o.onnx", ["--seed", "3"], "--drop lists them already")}[name]
        return ["shrink", model_onnx, "-o", out, "--drop", drop, *extra], [drop, model_onnx], needle
    if name == "output_is_external_data":
        ext = tmp / "ext.onnx"
        onnx.save(onnx.load(str(model_onnx)), str(ext), save_as_external_data=True, location="ext.data",
                  size_threshold=0)
        return ["shrink", ext, "-o", tmp / "ext.data", "--ratio", "0.5"], [ext, tmp / "ext.data"], "external data"
    if name == "json_equal_to_output":
        return ["shrink", model_onnx, "-o", tmp / "s.onnx", "--ratio", "0.5", "--json", tmp / "s.onnx"], \
            [model_onnx], "the second written would replace the first"
    if name in ("output_inside_the_dataset", "dataset_function_exits", "dataset_function_empty"):
        source = tmp / "data.py"
        source.write_text("import numpy as np\ndef bye():\n    import sys; sys.exit(0)\n"
                          "def empty():\n    return np.zeros((0, 3, 8, 8)), np.zeros(0, int)\n")
        spec, out, needle = {"output_inside_the_dataset": (f"py:{source}:bye", source, "is the input file"),
                             "dataset_function_exits": (f"py:{source}:bye", tmp / "t.pt", "sys.exit(0)"),
                             "dataset_function_empty": (f"py:{source}:empty", tmp / "t.pt", "holds no images")}[name]
        return ["train", "--arch", "test_resnet_cifar", "--epochs", "1", "--dataset", spec, "-o", out], \
            [source], needle
    return _case_limits(name, files, tmp)


def _case_limits(name, files, tmp):
    """Values past what the libraries below take, paths the system refuses, damaged reports:
    internal errors, a hang or exit 0 before the same adversarial pass."""
    ckpt, model_onnx = files["ckpt"], files["onnx"]
    if name == "symlink_loop":
        (tmp / "a").symlink_to(tmp / "b")
        (tmp / "b").symlink_to(tmp / "a")
        return ["export", tmp / "a", "-o", tmp / "x.onnx"], [], "symlink loop"
    if name == "huge_batch":
        return ["profile", model_onnx, "--batch", "99999999999999999999"], [model_onnx], "too large"
    if name == "huge_learning_rate":
        return ["train", "--arch", "test_resnet_cifar", "--dataset", "digits", "--epochs", "1", "--lr", "1e300",
                "-o", tmp / "t.pt"], [], "too large"
    if name == "nan_tolerance":
        return ["export", ckpt, "-o", tmp / "x.onnx", "--atol", "nan"], [ckpt], "finite"
    if name == "thousands_of_threads":  # hung ONNX Runtime's start past 300 s
        return ["profile", model_onnx, "--threads", "100000", "--iterations", "2"], [model_onnx], "per core"
    if name == "train_output_is_a_folder":  # was found after the training
        (tmp / "runs").mkdir()
        return ["train", "--arch", "test_resnet_cifar", "--dataset", "digits", "--epochs", "1", "-o", tmp / "runs"], \
            [], "is a folder"
    if name == "more_processes_than_cores":
        return ["train", "--arch", "test_resnet_cifar", "--dataset", "digits", "--epochs", "1", "--nproc",
                str((os.cpu_count() or 1) + 1), "-o", tmp / "t.pt"], [], "more processes than"
    if name == "infinite_tolerance_in_a_target":  # compare passed two unrelated models
        target = tmp / "loose.toml"
        target.write_text('name = "loose"\nbackend = "onnxruntime"\n[tolerances]\natol = inf\n')
        return ["profile", model_onnx, "--target", target, "--iterations", "2"], [target], "finite"
    if name in ("empty_report", "report_of_strings"):  # the first replaced a good report.html with '?'s
        run = tmp / "run"
        run.mkdir()
        (run / "report.json").write_text("{}" if name == "empty_report" else
                                         '{"dense": "x", "pruned": "y", "target": "z"}')
        return ["report", run], [run / "report.json"], "not a deploypipe build report"
    if name == "quantize_precision_twice":  # --int8 silently overrode --precision fp16
        return ["quantize", model_onnx, "-o", tmp / "q.onnx", "--dataset", "digits", "--precision", "fp16",
                "--int8"], [model_onnx], "unrecognized arguments: --int8"
    if name == "single_class_npz":  # trained a one-class 'classifier', exit 0
        data = tmp / "one.npz"
        np.savez(data, x=np.random.default_rng(0).random((20, 3, 8, 8), dtype=np.float32), y=np.zeros(20, int))
        return ["train", "--arch", "test_resnet_cifar", "--dataset", f"npz:{data}", "--epochs", "1",
                "-o", tmp / "t.pt"], [data], "single class"
    if name == "probe_output_under_proc":  # refused after the whole probe
        return ["lut", "--probe-multiple", "-o", "/proc/deploypipe-probe.json"], [], "cannot write"
    if name == "probe_with_a_model":  # the model and --groups were ignored
        return ["lut", model_onnx, "--probe-multiple"], [model_onnx], "not a model's groups"
    if name == "baselines_under_proc":  # refused after timing the suite
        suite = tmp / "s.toml"
        suite.write_text('name = "s"\ntargets = ["cpu-batch32"]\nbatches = [8]\nrepeats = 3\n'
                         '[[models]]\nzoo = "test_resnet_cifar"\nname = "r"\n')
        return ["bench", suite, "--save", "x", "--baselines", "/proc/deploypipe-baselines"], [suite], "cannot write"
    if name == "target_is_a_folder":  # was: 'does not exist'
        (tmp / "t.toml").mkdir()
        return ["profile", model_onnx, "--target", tmp / "t.toml"], [model_onnx], "is a folder"
    if name == "onnx_without_nodes":  # was: 'export a PyTorch checkpoint first'
        empty = tmp / "empty-graph.onnx"
        onnx.save(helper.make_model(helper.make_graph([], "g", [], [])), str(empty))
        return ["profile", empty], [empty], "its graph has no nodes"
    if name == "num_classes_against_the_checkpoint":  # was ignored, with 'rebuilt 1 layer(s)'
        return ["export", ckpt, "-o", tmp / "x.onnx", "--num-classes", "5"], [ckpt], "contradicts it"
    if name in ("output_replaces_a_dataset_image", "run_folder_inside_the_dataset"):
        root = tmp / "DS"
        for cls in "ab":
            (root / cls).mkdir(parents=True)
            for i in range(3):
                np.save(root / cls / f"{i}.npy", np.zeros(1))  # any file: only the paths matter here
        if name == "output_replaces_a_dataset_image":
            return ["train", "--arch", "test_resnet_cifar", "--epochs", "1", "--dataset", f"folder:{root}",
                    "-o", root / "a" / "0.npy"], [root / "a" / "0.npy"], "is a file of the input folder"
        return ["build", ckpt, "--dataset", f"folder:{root}", "-o", root / "run"], [ckpt], "would add a folder"
    if name == "torchscript_build":  # crashed in the export after pruning (or said 'pass arch=')
        scripted = tmp / "ts.pt"
        torch.jit.trace(torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 3)),
                        torch.randn(1, 3, 16, 16)).save(str(scripted))
        return ["build", scripted, "--ratio", "0.3", "-o", tmp / "run"], [scripted], "cannot be pruned"
    if name == "negative_seed":  # numpy's ValueError, an internal error
        return ["shrink", model_onnx, "-o", tmp / "y.onnx", "--ratio", "0.3", "--seed", "-1"], [model_onnx], \
            "must be from 0 to"
    raise AssertionError(name)


CASES = ["empty_file", "truncated_onnx", "random_bytes", "directory_instead_of_file", "wrong_extension",
         "malicious_pickle", "malicious_raw_pickle", "state_dict_not_matching_arch", "unknown_arch", "unknown_dataset", "unknown_target",
         "unknown_method", "missing_data_folder", "wrong_channel_count", "nan_weights", "unsupported_op",
         "frozen_group_in_drop", "impossible_budget", "latency_budget_below_fastest", "profile_with_wrong_field",
         "gpu_target_without_gpu", "output_in_read_only_folder", "output_equal_to_input", "full_disk"]
ISSUE_25 = ["nan_onnx_weights", "inf_onnx_weights_profile", "nan_onnx_weights_build", "output_under_proc",
            "output_under_a_file", "output_is_a_device", "run_folder_under_proc"]
CASES += ISSUE_25 + ["shapes_unreadable", "shapes_wrong_input_name", "onnx_custom_op_build",
                     "onnx_ir_version_too_new", "method_needs_data", "no_prunable_group",
                     "onnx_distill", "onnx_method_arg", "onnx_epochs", "epochs_without_data",
                     "output_is_the_drop_file", "drop_file_of_floats", "drop_with_seed", "output_is_external_data",
                     "json_equal_to_output", "output_inside_the_dataset", "dataset_function_exits",
                     "dataset_function_empty", "symlink_loop", "huge_batch", "huge_learning_rate", "nan_tolerance",
                     "thousands_of_threads", "train_output_is_a_folder", "more_processes_than_cores",
                     "infinite_tolerance_in_a_target", "empty_report", "report_of_strings",
                     "quantize_precision_twice", "single_class_npz", "probe_output_under_proc", "probe_with_a_model",
                     "baselines_under_proc", "target_is_a_folder", "onnx_without_nodes",
                     "num_classes_against_the_checkpoint", "negative_seed", "output_replaces_a_dataset_image",
                     "run_folder_inside_the_dataset", "torchscript_build"]


@pytest.mark.parametrize("name", CASES)
def test_bad_input(name, files, tmp_path, capsys, monkeypatch):
    argv, inputs, needle = _case(name, files, tmp_path)
    before = {p: sha256_file(p) for p in inputs}
    MARKER.unlink(missing_ok=True)
    with _read_only(tmp_path / "readonly", monkeypatch) if name == "output_in_read_only_folder" else _nothing():
        if name == "full_disk":
            _simulate_full_disk(monkeypatch)
        code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert code == 2, f"{name}: exit {code}\n{err}"
    assert lines and lines[-1].startswith("deploypipe: error:"), err
    assert len([l for l in lines if l.startswith("deploypipe: error:")]) == 1 and "Traceback" not in err + out
    message = lines[-1]
    print(f"[{name}] exit {code}: {message}")  # the matrix in the note: pytest -rP tests/test_bad_inputs.py
    assert needle.lower() in message.lower(), f"{name}: {message!r} does not mention {needle!r}"
    assert message.rstrip().endswith((".", "?", "!"))
    assert {p: sha256_file(p) for p in inputs} == before, f"{name} modified an input"
    assert not MARKER.exists(), "the pickle's payload ran"
    if name in ISSUE_25:  # nothing written: no output, no run folder, no temporary file
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in inputs if p.parent == tmp_path)


def _simulate_full_disk(monkeypatch):
    import deploypipe.utils.files as files_mod

    def no_space(path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(files_mod, "_fsync", no_space)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _read_only:
    """A folder nobody can create files in: chmod for a normal user, the immutable
    attribute for root (which ignores permissions), or a simulated EACCES where neither works."""

    def __init__(self, folder: Path, monkeypatch):
        self.folder, self.monkeypatch, self.undo = folder, monkeypatch, None

    def __enter__(self):
        if os.geteuid() != 0:
            self.folder.chmod(0o500)
            self.undo = lambda: self.folder.chmod(0o700)
        elif shutil.which("chattr") and subprocess.run(["chattr", "+i", str(self.folder)],
                                                       capture_output=True).returncode == 0:
            self.undo = lambda: subprocess.run(["chattr", "-i", str(self.folder)], check=False)
        else:
            import tempfile

            real = tempfile.mkstemp

            def refuse(*args, dir=None, **kw):
                if dir is not None and Path(dir).resolve() == self.folder.resolve():
                    raise PermissionError(errno.EACCES, "Permission denied", str(dir))
                return real(*args, dir=dir, **kw)

            self.monkeypatch.setattr(tempfile, "mkstemp", refuse)
        return self

    def __exit__(self, *exc):
        if self.undo:
            self.undo()
        return False
