"""Two runs at once (issue 25): a cached latency table is worked on by one process at a
time and the second uses what the first measured; timing holds the device, so a second
run waits for it, saying so in one line."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deploypipe.graph import analyse
from deploypipe.hw import TableSpec, measure_table
from deploypipe.hw.cache import architecture_hash, table_path
from deploypipe.measure.fingerprint import hardware_fingerprint
from deploypipe.targets import load_target
from deploypipe.testing.graphs import build_cnn, random_spec

from .conftest import MacsTimer

HOLD_SECONDS = 1.5
# Holds a lock for HOLD_SECONDS, then (for a cache entry) puts the table it was given in place.
HOLDER = """
import os, sys, time
from deploypipe.utils.locks import device_lock, entry_lock
kind, name, seconds, table, content = sys.argv[1:6]
with (entry_lock(name) if kind == "entry" else device_lock(name)):
    print("held", flush=True)
    time.sleep(float(seconds))
    if table:
        with open(table + ".part", "w") as f:
            f.write(content)
        os.replace(table + ".part", table)
"""


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture()
def said():
    handler = _Lines()
    logger = logging.getLogger("deploypipe")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    yield handler.lines
    logger.removeHandler(handler)
    logger.setLevel(old)


@pytest.fixture(scope="module")
def small():
    return analyse(build_cnn(random_spec(3)))


def _hold(kind: str, name: str, table: Path | None = None, content: str = "") -> subprocess.Popen:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, kind, name, str(HOLD_SECONDS), str(table or ""), content],
                            stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_table_run_waits_and_uses_what_the_first_measured(small, tmp_path, said):
    target = load_target("cpu")
    spec = TableSpec(show_progress=False, cache_dir=tmp_path / "lut")
    first = measure_table(small, target, spec, timer=MacsTimer())
    path = table_path(architecture_hash(small.model), target, hardware_fingerprint().key(),
                      target.round_to, spec.cache_dir)
    content = path.read_text()
    path.unlink()  # the other run has not written it yet: it is measuring it now
    holder = _hold("entry", str(path), path, content)
    second, start = MacsTimer(), time.perf_counter()
    table = measure_table(small, target, spec, timer=second)
    waited = time.perf_counter() - start
    holder.wait(timeout=30)
    assert second.calls == 0, "the second run measured the table again instead of waiting for it"
    assert waited >= HOLD_SECONDS * 0.5 and table.meta["from_cache"]
    assert table.to_dict()["groups"] == first.to_dict()["groups"]
    assert any(line.startswith("waiting for the latency table") for line in said), said


def test_timing_waits_for_the_device(small, tmp_path, said):
    target = load_target("cpu")
    holder = _hold("device", target.device)
    timer, start = MacsTimer(), time.perf_counter()
    measure_table(small, target, TableSpec(show_progress=False, use_cache=False), timer=timer)
    waited = time.perf_counter() - start
    holder.wait(timeout=30)
    assert waited >= HOLD_SECONDS * 0.5 and timer.calls > 0
    assert any(line.startswith("waiting for device cpu") for line in said), said


def test_a_table_killed_while_saving_leaves_no_temporary_file(small, tmp_path):
    target = load_target("cpu")
    spec = TableSpec(show_progress=False, cache_dir=tmp_path / "lut")
    path = table_path(architecture_hash(small.model), target, hardware_fingerprint().key(),
                      target.round_to, spec.cache_dir)
    path.parent.mkdir(parents=True)
    (path.parent / f".{path.name}.k1ll3d.tmp").write_text("{half a tab")
    measure_table(small, target, spec, timer=MacsTimer())
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_two_lut_commands_at_once_measure_the_table_once(tmp_path):
    import onnx

    model = tmp_path / "m.onnx"
    onnx.save(build_cnn(random_spec(3)), str(model))
    env = {**os.environ, "DEPLOYPIPE_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "deploypipe", "lut", str(model), "--iterations", "20"]
    procs = [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    assert [code for code, _ in results] == [0, 0], results
    reused = [err for _, err in results if "groups from the cache" in err]
    assert len(reused) == 1, "both runs measured the table, or neither did"
