"""Baselines per (target, fingerprint): round trip, refusal across hardware and targets."""
from __future__ import annotations

import dataclasses
import json

import pytest

from deploypipe.bench import BaselineStore, check_comparable, load_run
from deploypipe.bench.baselines import check_same_hardware, check_same_target
from deploypipe.errors import InputError
from deploypipe.measure.fingerprint import hardware_fingerprint

from .conftest import TARGET, make_run, noisy, other_fingerprint


def test_save_and_load_round_trip(tmp_path):
    run = make_run({"a b1 3x8x8": noisy(1.0, 0.1)}, reference=noisy(0.5, 0.1))
    path = BaselineStore(tmp_path).save(run, "main")
    assert path == tmp_path / TARGET / run.fingerprint.key() / "main.json"
    again = load_run(path)
    assert again.cases[0].values("median") == pytest.approx(run.cases[0].values("median"))
    assert again.cases[0].rounds == run.cases[0].rounds
    assert again.reference.values("p99") == pytest.approx(run.reference.values("p99"))
    assert again.fingerprint.key() == run.fingerprint.key()
    assert again.target == run.target and again.settings == run.settings


def test_find_by_name_on_this_machine(tmp_path):
    store = BaselineStore(tmp_path)
    path = store.save(make_run({"a": [1.0] * 3}), "main")
    assert store.find("main", TARGET, hardware_fingerprint()) == path
    assert store.find(str(path), TARGET, hardware_fingerprint()) == path


def test_a_baseline_from_other_hardware_is_refused(tmp_path):
    store = BaselineStore(tmp_path)
    store.save(make_run({"a": [1.0] * 3}, fingerprint=other_fingerprint()), "main")
    with pytest.raises(InputError) as info:
        store.find("main", TARGET, hardware_fingerprint())
    message = info.value.sentence()
    assert "other hardware" in message and "--allow-other-hardware" in message
    assert "\n" not in message
    found = store.find("main", TARGET, hardware_fingerprint(), allow_other_hardware=True)
    assert found.parent.name == other_fingerprint().key()


def test_a_baseline_file_from_other_hardware_is_refused_unless_allowed():
    base = make_run({"a": [1.0] * 3}, fingerprint=other_fingerprint())
    current = make_run({"a": [1.0] * 3})
    with pytest.raises(InputError, match="other hardware.*cpu 'Imaginary CPU 9000' then"):
        check_comparable(base, current)
    warning = check_comparable(base, current, allow_other_hardware=True)
    assert "Imaginary CPU 9000" in warning and "logical_cores 128 then" in warning
    assert check_same_hardware(current.fingerprint, current.fingerprint, allow=False) is None


def test_runtime_versions_are_part_of_the_hardware():
    newer = dataclasses.replace(hardware_fingerprint(), onnxruntime="99.0")
    with pytest.raises(InputError, match="onnxruntime"):
        check_same_hardware(newer, hardware_fingerprint(), allow=False)


def test_a_baseline_of_another_target_or_other_settings_is_refused():
    cpu = make_run({"a": [1.0] * 3}, target="cpu").target
    with pytest.raises(InputError, match="taken on target 'cpu', not 'cpu-batch32'"):
        check_same_target(cpu, make_run({"a": [1.0] * 3}).target)
    with pytest.raises(InputError, match="threads = 1 when the baseline was taken"):
        check_same_target({**cpu, "threads": 1}, cpu)


def test_missing_and_bad_baselines(tmp_path):
    store = BaselineStore(tmp_path)
    with pytest.raises(InputError, match="no baseline 'main' for target"):
        store.find("main", TARGET, hardware_fingerprint())
    with pytest.raises(InputError, match="not a simple name"):
        store.find("main baseline", TARGET, hardware_fingerprint())
    with pytest.raises(InputError, match="does not exist"):
        store.find(str(tmp_path / "x.json"), TARGET, hardware_fingerprint())
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(InputError, match="cannot read baseline"):
        load_run(bad)
    bad.write_text(json.dumps({"format": "something/else"}))
    with pytest.raises(InputError, match="not a deploypipe benchmark run"):
        load_run(bad)
    data = make_run({"a": [1.0] * 3}).to_dict()
    data["cases"][0]["rounds"][0]["medianMs"] = -1.0
    bad.write_text(json.dumps(data))
    with pytest.raises(InputError, match="is damaged"):
        load_run(bad)
    data = make_run({"a": [1.0] * 3}).to_dict()
    data["fingerprint"] = None  # was an internal error (AttributeError)
    bad.write_text(json.dumps(data))
    with pytest.raises(InputError, match="is damaged"):
        load_run(bad)


def test_a_json_output_serves_as_a_baseline(tmp_path):
    run = make_run({"a": noisy(1.0, 0.1)})
    path = tmp_path / "out.json"
    path.write_text(json.dumps({"run": run.to_dict(), "comparison": None}))
    assert load_run(path).cases[0].rounds == run.cases[0].rounds
