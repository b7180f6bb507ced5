"""Writes that fail (issue 25): a full disk as torch reports it, an interrupted write, and
the temporary file a killed write leaves, which the next run removes."""
from __future__ import annotations

import types

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import deploypipe.utils.files as files_mod
from deploypipe.errors import InputError
from deploypipe.graph.load import check_finite
from deploypipe.utils.files import remove_stale_temps, write_json, write_with


def test_a_full_disk_that_torch_save_reports_as_runtime_error_is_one_sentence(tmp_path, monkeypatch):
    def torch_like_writer(tmp):
        tmp.write_bytes(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(files_mod.shutil, "disk_usage", lambda path: types.SimpleNamespace(free=0))
    with pytest.raises(InputError, match="no space left"):
        write_with(tmp_path / "model.pt", torch_like_writer)
    assert list(tmp_path.iterdir()) == []


def test_a_bug_in_a_writer_stays_a_bug_when_the_disk_has_room(tmp_path):
    def broken(tmp):
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        write_with(tmp_path / "x.json", broken)
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_write_leaves_nothing(tmp_path):
    def interrupted(tmp):
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_with(tmp_path / "x.json", interrupted)
    assert list(tmp_path.iterdir()) == []


def test_stale_temporary_files_of_killed_writes_are_removed(tmp_path):
    write_json(tmp_path / "keep.json", {})
    (tmp_path / ".dense.onnx.ab12.tmp").write_text("half")
    (tmp_path / ".table.json.cd34.tmp").write_text("half")
    assert [p.name for p in remove_stale_temps(tmp_path, "table.json")] == [".table.json.cd34.tmp"]
    assert [p.name for p in remove_stale_temps(tmp_path)] == [".dense.onnx.ab12.tmp"]
    assert [p.name for p in tmp_path.iterdir()] == ["keep.json"]


def test_non_finite_constant_nodes_are_refused_with_the_count():
    value = numpy_helper.from_array(np.array([1.0, np.inf, -np.inf, np.nan], np.float32))
    node = helper.make_node("Constant", [], ["c"], value=value)
    model = helper.make_model(helper.make_graph([node], "g", [], [helper.make_tensor_value_info("c", 1, [4])]))
    with pytest.raises(InputError, match="has 3 NaN or infinite values in weight 'c'"):
        check_finite(model, "the model")
    check_finite(onnx.ModelProto(), "an empty model")


def test_an_output_inside_an_input_folder_may_be_new_but_never_replaces_or_adds_a_class(tmp_path):
    from deploypipe.errors import InputError
    from deploypipe.utils.files import check_output_path

    data = tmp_path / "data"
    (data / "a").mkdir(parents=True)
    (data / "a" / "0.png").write_bytes(b"x")
    assert check_output_path(data / "model.pt", data) == data / "model.pt"  # a new file beside the classes
    with pytest.raises(InputError, match="is a file of the input folder"):
        check_output_path(data / "a" / "0.png", data)
    with pytest.raises(InputError, match="would add a folder"):
        check_output_path(data / "run", data)  # a build's run folder: a new class
