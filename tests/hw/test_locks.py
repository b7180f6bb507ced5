"""Two runs at once (issue 25): a cached latency table is worked on by one process at a
time and the second uses what the first measured; timing holds the device, so a second
run waits for it, saying so in one line."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
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

RELEASE_AFTER = 60.0  # seconds a holder waits for the test's word before letting go anyway
# Holds a lock until the test writes a line (once the other side has said that it waits: no
# race with a sleep on a loaded machine), then (for a cache entry) puts the given table in place.
HOLDER = """
import os, select, sys
from deploypipe.utils.locks import device_lock, entry_lock
kind, name, seconds, table, content = sys.argv[1:6]
with (entry_lock(name) if kind == "entry" else device_lock(name)):
    print("held", flush=True)
    select.select([sys.stdin], [], [], float(seconds))
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
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, kind, name, str(RELEASE_AFTER), str(table or ""), content],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "held"
    return proc


def _release_once_waiting(holder: subprocess.Popen, said: list[str], prefix: str) -> threading.Thread:
    """Tell ``holder`` to let go once this process has said ``prefix...`` (it is then blocked
    on the lock), or after RELEASE_AFTER seconds."""
    def release():
        deadline = time.monotonic() + RELEASE_AFTER
        while not any(line.startswith(prefix) for line in said) and time.monotonic() < deadline:
            time.sleep(0.02)
        holder.stdin.write("go\n")
        holder.stdin.flush()

    thread = threading.Thread(target=release, daemon=True)
    thread.start()
    return thread


def test_a_second_table_run_waits_and_uses_what_the_first_measured(small, tmp_path, said):
    target = load_target("cpu")
    spec = TableSpec(show_progress=False, cache_dir=tmp_path / "lut")
    first = measure_table(small, target, spec, timer=MacsTimer())
    path = table_path(architecture_hash(small.model), target, hardware_fingerprint().key(),
                      target.round_to, spec.cache_dir)
    content = path.read_text()
    path.unlink()  # the other run has not written it yet: it is measuring it now
    holder = _hold("entry", str(path), path, content)
    _release_once_waiting(holder, said, "waiting for the latency table")
    second = MacsTimer()
    table = measure_table(small, target, spec, timer=second)
    assert any(line.startswith("waiting for the latency table") for line in said), said
    assert second.calls == 0, "the second run measured the table again instead of waiting for it"
    assert table.meta["from_cache"] and table.to_dict()["groups"] == first.to_dict()["groups"]
    holder.wait(timeout=30)


def test_timing_waits_for_the_device(small, tmp_path, said):
    target = load_target("cpu")
    holder = _hold("device", target.device)
    _release_once_waiting(holder, said, "waiting for device cpu")
    timer = MacsTimer()
    measure_table(small, target, TableSpec(show_progress=False, use_cache=False), timer=timer)
    assert any(line.startswith("waiting for device cpu") for line in said), said
    assert timer.calls > 0 and holder.wait(timeout=30) == 0


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
