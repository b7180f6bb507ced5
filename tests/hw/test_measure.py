"""Measuring tables: sub-graphs with the real shapes, the cache, resuming, the keys."""
from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from deploypipe.graph import analyse
from deploypipe.graph.view import GraphView
from deploypipe.hw import TableSpec, group_subgraph, measure_table, with_batch
from deploypipe.hw.cache import architecture_hash, cache_root
from deploypipe.targets import load_target

from .conftest import MacsTimer

QUIET = TableSpec(show_progress=False)


def _run(model):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {i.name: np.ones(i.shape, dtype=np.float32) for i in session.get_inputs()}
    return session, session.run(None, feeds)


def test_subgraph_has_the_real_input_shapes_and_shrinks_its_group(resnet_analysis):
    a = resnet_analysis
    static = with_batch(a.model, 4)
    view = GraphView(static)
    for g in a.prunable:
        sub = group_subgraph(static, g, view)
        session, _ = _run(sub.at_width(g.width))
        for i in session.get_inputs():  # same shape as the tensor in the whole model at batch 4
            assert tuple(i.shape) == view.shape(i.name) and i.shape[0] == 4
        small = analyse(sub.at_width(g.width // 2 or 1), normalized=True)
        assert small.groups[sub.local_id].width == (g.width // 2 or 1)
        assert len(sub.node_names) < len(view.nodes)


def test_subgraphs_of_random_graphs_isolate_their_group_and_run():
    from deploypipe.testing.graphs import build_cnn, random_spec

    for seed in range(12):
        a = analyse(build_cnn(random_spec(seed)))
        static = with_batch(a.model, 2)
        view = GraphView(static)
        for g in a.prunable:
            if g.activations:
                sub = group_subgraph(static, g, view)
                _run(sub.at_width(max(1, g.width // 2)))
                assert not sub.whole


def test_second_run_measures_nothing_and_the_cache_is_keyed(resnet_analysis):
    target = load_target("cpu")
    first = MacsTimer()
    table = measure_table(resnet_analysis, target, QUIET, timer=first)
    assert first.calls > len(table.groups) and table.meta["complete"]
    again = MacsTimer()
    cached = measure_table(resnet_analysis, target, QUIET, timer=again)
    assert again.calls == 0 and cached.meta["from_cache"]
    assert cached.groups == table.groups and cached.dense_ms == table.dense_ms
    other = MacsTimer()  # another batch is another table
    measure_table(resnet_analysis, load_target("cpu-batch32"), QUIET, timer=other)
    assert other.calls == first.calls
    assert len(list(cache_root().glob("*.json"))) == 2


def test_an_interrupted_run_resumes_where_it_stopped(resnet_analysis):
    target = load_target("cpu")
    full = MacsTimer()
    measure_table(resnet_analysis, target, TableSpec(show_progress=False, use_cache=False), timer=full)
    broken = MacsTimer(fail_after=12)
    with pytest.raises(KeyboardInterrupt):
        measure_table(resnet_analysis, target, QUIET, timer=broken)
    saved = json.loads(next(cache_root().glob("*.json")).read_text())
    assert 0 < len(saved["groups"]) < len(resnet_analysis.prunable)
    rest = MacsTimer()
    table = measure_table(resnet_analysis, target, QUIET, timer=rest)
    done = sum(len(g["widths"]) + 1 for g in saved["groups"].values())  # + the dense model beside each
    assert rest.calls == full.calls - 1 - done  # neither the dense model nor a finished group again
    assert len(table.groups) == len(resnet_analysis.prunable) and table.meta["complete"]


def test_groups_option_measures_only_those(resnet_analysis):
    timer = MacsTimer()
    table = measure_table(resnet_analysis, load_target("cpu"), TableSpec(groups=(1, 5), show_progress=False),
                          timer=timer)
    assert set(table.groups) == {1, 5}


def test_architecture_hash_ignores_weights_but_not_shapes(resnet_analysis):
    from onnx import numpy_helper

    model = resnet_analysis.model
    other = type(model)()
    other.CopyFrom(model)
    t = other.graph.initializer[0]
    t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t) + 1.0, t.name))
    assert architecture_hash(other) == architecture_hash(model)
    from deploypipe.graph import shrink

    smaller = shrink(resnet_analysis, {1: [0, 1]})
    assert architecture_hash(smaller) != architecture_hash(model)


class DriftingTimer(MacsTimer):
    """MacsTimer on a machine whose load changes between calls: call k runs ``factors[k % n]``
    times slower (the first call, the table's dense model, at 1)."""

    def __init__(self, factors=(1.0, 2.7, 0.6, 1.9)):
        super().__init__()
        self.factors, self.call = factors, 0

    def time(self, models):
        factor = self.factors[self.call % len(self.factors)]
        self.call += 1
        return [factor * ms for ms in super().time(models)]


def test_groups_measured_under_different_load_speak_the_table_unit(resnet_analysis):
    target, spec = load_target("cpu"), TableSpec(show_progress=False, use_cache=False)
    quiet = measure_table(resnet_analysis, target, spec, timer=MacsTimer())
    drifting = measure_table(resnet_analysis, target, spec, timer=DriftingTimer())
    assert drifting.dense_ms == quiet.dense_ms
    for g, t in quiet.groups.items():
        assert drifting.groups[g].ms == pytest.approx(t.ms, rel=1e-9)


def test_a_call_longer_than_a_chunk_scales_later_chunks_by_its_reference(monkeypatch):
    """Chunks are timed at different moments: each later chunk re-times the first model and
    is scaled by it, so all answers are in the first chunk's unit."""
    from deploypipe.hw import timer as timer_module

    timer = timer_module.TargetTimer(load_target("cpu"))
    loads = iter([1.0, 3.0, 0.5, 2.0])
    seen = []

    def chunk(models):
        load = next(loads)
        seen.append(list(models))
        return [load * m for m in models]

    monkeypatch.setattr(timer, "_time_chunk", chunk)
    truth = [float(i + 1) for i in range(3 * timer_module.CHUNK)]
    assert timer.time(truth) == pytest.approx(truth, rel=1e-12)
    assert all(c[0] == truth[0] for c in seen) and len(seen) == 4


def test_multi_threaded_cpu_sessions_settle_before_each_burst(monkeypatch):
    """ORT's spinning worker threads of one session slow the next one down: the timer
    pauses before each burst on a multi-threaded CPU target, never on a single-threaded one."""
    from deploypipe.backends.ort import SETTLE_SECONDS, settle_seconds
    from deploypipe.hw import timer as timer_module

    assert settle_seconds(load_target("cpu")) == SETTLE_SECONDS  # threads = 0: the library's pool
    assert settle_seconds(load_target("cpu-batch32")) == 0.0  # one thread: no pool
    assert settle_seconds(load_target("torch-cuda")) == 0.0

    class Engine:
        inputs = ()

        def time(self, batch, warmup, iterations, **kw):
            events.append("run")
            return type("Stats", (), {"statistic": lambda self, name: 1.0})()

    events = []
    monkeypatch.setattr(timer_module.time, "sleep", lambda s: events.append(s))
    for name, expected in (("cpu", SETTLE_SECONDS), ("cpu-batch32", None)):
        events.clear()
        timer = timer_module.TargetTimer(load_target(name), iterations=10, bursts=2)
        timer._interleave([Engine(), Engine()])
        runs = events.count("run")
        assert runs == 4
        assert events == ([expected, "run"] * runs if expected else ["run"] * runs)


def test_the_loops_pair_timer_takes_more_bursts_than_a_tables(monkeypatch):
    """A verdict on one pruned model is timed over PAIR_BURSTS bursts (never more bursts than
    iterations); the table keeps the cheaper default."""
    from deploypipe.hw import timer as timer_module

    cpu = load_target("cpu")
    assert timer_module.TargetTimer(cpu).bursts == 5
    assert timer_module.TargetTimer.for_pairs(cpu).bursts == timer_module.PAIR_BURSTS > 5
    assert timer_module.TargetTimer.for_pairs(cpu, iterations=4).bursts == 4

    class Engine:
        inputs = ()

        def time(self, batch, warmup, iterations, **kw):
            runs.append(iterations)
            return type("Stats", (), {"statistic": lambda self, name: 1.0})()

    runs = []
    monkeypatch.setattr(timer_module.time, "sleep", lambda s: None)
    timer_module.TargetTimer.for_pairs(cpu)._interleave([Engine(), Engine()])
    assert len(runs) == 2 * timer_module.PAIR_BURSTS and sum(runs) <= 2 * cpu.iterations


def test_bursts_of_returns_every_burst_in_model_order(monkeypatch):
    """Burst i of each model was timed in the same round of the alternation, every other round in
    reverse order: the raw values come back per model, in order, for a paired comparison; more
    models than CHUNK are refused."""
    import onnx

    from deploypipe.hw import timer as timer_module

    clock = iter(range(1, 100))

    class Engine:
        inputs = ()

        def __init__(self, scale):
            self.scale = scale

        def time(self, batch, warmup, iterations, **kw):
            value = self.scale * next(clock)
            return type("Stats", (), {"statistic": lambda self, name: value})()

        def close(self):
            pass

    class Backend:
        def build(self, path, target):
            return Engine(10.0 if path.name == "m0.onnx" else 1.0)

    monkeypatch.setattr("deploypipe.backends.backend_for_target", lambda target: Backend())
    monkeypatch.setattr(timer_module.time, "sleep", lambda s: None)
    model = onnx.helper.make_model(onnx.helper.make_graph([], "g", [], []))
    timer = timer_module.TargetTimer(load_target("cpu-batch32"), iterations=3, bursts=3)
    # burst 0 runs m0 then m1, burst 1 m1 then m0 (ABBA), burst 2 m0 then m1; values stay per model
    assert timer.bursts_of([model, model]) == [[10.0, 40.0, 50.0], [2.0, 3.0, 6.0]]
    with pytest.raises(ValueError):
        timer.bursts_of([model] * (timer_module.CHUNK + 1))
