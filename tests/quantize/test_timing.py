"""With a quantized build, the latency table and the measure-and-correct loop time
quantized models: what an int8 target will run."""
from __future__ import annotations

import numpy as np
from onnx import TensorProto, numpy_helper

from deploypipe.graph import analyse, load_onnx
from deploypipe.pipeline.latency import LatencyOptions, plan_latency
from deploypipe.prune.budget import Budget
from deploypipe.quantize import TimingQuantizer, has_qdq
from deploypipe.targets import load_target


class Int8WeightTimer:
    """Latency = int8 weight bytes / 1e4 ms (fp32 weights count 4x), counting the models it
    sees and how many of them carry Q/DQ nodes."""

    def __init__(self):
        self.models = self.quantized = 0

    def time(self, models):
        out = []
        for m in models:
            self.models += 1
            self.quantized += has_qdq(m)
            size = sum(numpy_helper.to_array(t).size * (1 if t.data_type == TensorProto.INT8 else 4)
                       for t in m.graph.initializer if t.data_type in (TensorProto.INT8, TensorProto.FLOAT))
            out.append(0.01 + size / 1e4)
        return out


def test_table_and_loop_time_quantized_models(resnet20_onnx, tmp_path):
    analysis = analyse(load_onnx(resnet20_onnx))
    timer = Int8WeightTimer()
    rng = np.random.default_rng(0)
    plan = plan_latency(analysis, [rng.random(g.width) for g in analysis.groups], [g.prunable for g in analysis.groups],
                        load_target("cpu-int8"), Budget.parse("latency", 0.6), round_to=8, max_ratio=0.9,
                        options=LatencyOptions(rounds=4, use_cache=False), timer=timer,
                        prepare=TimingQuantizer("int8"))
    assert timer.models > len(analysis.groups) and timer.quantized == timer.models
    assert plan.result.met and plan.table.meta["target"] == "cpu-int8"
    # the final check times the delivered (already quantized) file beside the dense model, quantized on the fly
    dense, pruned = tmp_path / "dense.onnx", tmp_path / "pruned.int8.onnx"
    dense.write_bytes(resnet20_onnx.read_bytes())
    pruned.write_bytes(TimingQuantizer("int8")(load_onnx(resnet20_onnx)).SerializeToString())
    before = timer.quantized
    final = plan.check(dense, pruned)
    assert timer.quantized == before + 2 and final["final_pruned_ms"] == final["final_dense_ms"]


class _PairTimer:
    """Dense fp32 twice as slow as dense int8, whatever the machine."""

    def time(self, models):
        return [2.0 if not has_qdq(m) else 1.0 for m in models]


def test_a_latency_ratio_is_of_the_dense_fp32_model(resnet20_onnx, monkeypatch):
    from deploypipe.hw import TargetTimer
    from deploypipe.pipeline.quantize_stage import fp32_ratio, targets_for

    monkeypatch.setattr(TargetTimer, "for_pairs", classmethod(lambda cls, target, **kw: _PairTimer()))
    targets = targets_for(load_target("cpu-batch32"), "int8")
    assert targets[1].round_to == 16 and targets[0].precision == "fp32"
    dense, prepare = load_onnx(resnet20_onnx), TimingQuantizer("int8")
    budget, note = fp32_ratio(Budget.parse("latency", 0.3), dense, targets, prepare)
    assert budget.value == 0.6 and note["dense_fp32_over_quantized"] == 2.0 and "0.6 of dense int8" in note["sentence"]
    capped, _ = fp32_ratio(Budget.parse("latency", 0.7), dense, targets, prepare)
    assert capped.value == 1.0  # quantizing alone meets it
    absolute = Budget.parse("latency", "5ms")
    assert fp32_ratio(absolute, dense, targets, prepare) == (absolute, {})
