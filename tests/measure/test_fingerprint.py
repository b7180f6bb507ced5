from __future__ import annotations

import dataclasses
import os
import re

from deploypipe.measure import fingerprint as fp_mod
from deploypipe.measure.fingerprint import hardware_fingerprint


def _fresh():
    hardware_fingerprint.cache_clear()
    fp_mod.gpu_info.cache_clear()
    return hardware_fingerprint()


def test_stable_within_a_process():
    a, b = _fresh(), _fresh()
    assert a == b
    assert a.key() == b.key()
    assert re.fullmatch(r"[0-9a-f]{12}", a.key())


def test_describes_this_machine():
    fp = hardware_fingerprint()
    assert fp.logical_cores == os.cpu_count()
    assert fp.cpu and fp.machine
    assert fp.onnxruntime and fp.torch and fp.numpy and fp.onnx
    d = fp.to_dict()
    assert d["key"] == fp.key() and d["cpu"] == fp.cpu


def test_key_follows_hardware_not_provenance():
    fp = hardware_fingerprint()
    assert dataclasses.replace(fp, cpu="Other CPU").key() != fp.key()
    assert dataclasses.replace(fp, gpu="NVIDIA H100").key() != fp.key()
    assert dataclasses.replace(fp, onnxruntime="0.0.1").key() != fp.key()
    assert dataclasses.replace(fp, python="2.7.18", os="Other").key() == fp.key()


def test_cpu_model_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Fancy  CPU @ 3.0GHz\nflags\t\t: avx2\n")
    assert fp_mod._cpu_model(info) == "Fancy CPU @ 3.0GHz"
    assert fp_mod._cpu_model(tmp_path / "missing")  # falls back to something non-empty


def test_gpu_from_proc(tmp_path):
    gpu = tmp_path / "0000:01:00.0"
    gpu.mkdir()
    (gpu / "information").write_text("Model: \t\t NVIDIA H100 80GB HBM3\nIRQ: 1\n")
    assert fp_mod._gpu_from_proc(tmp_path) == ("NVIDIA H100 80GB HBM3", None, None)
    assert fp_mod._gpu_from_proc(tmp_path / "none") == (None, None, None)
