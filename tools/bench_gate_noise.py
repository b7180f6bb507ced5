"""Measure the benchmark gate on this machine: run-to-run noise (CV) of three zoo models,
false alarms over identical runs, and the smallest injected slowdown the gate detects.

Run it on a machine nobody else is timing on (other engineers take the same lock):

    flock /tmp/deploypipe-measure.lock .venv/bin/python tools/bench_gate_noise.py

What it does:

1. Exports resnet20 (3x32x32), mobilenet_v2 (3x64x64) and resnet18 (3x112x112), 10
   classes, batch 1, and for each a slowed copy per requested slowdown: an extra 3x3
   convolution on the input whose result is multiplied by 0 and added to the logits, with
   its width calibrated (two probe widths, interleaved timing) to cost that fraction.
2. Times all of them with the fixed reference model in ``--runs`` separate runs, each in
   interleaved rounds as ``deploypipe bench`` does, on ONNX Runtime with 1 thread.
3. Analyses every ordered pair of runs (baseline run i, current run j) with the gate:
   identical cases (false alarms) and slowed cases in run j against the original in run i
   (detections), at several thresholds; the slowdown actually achieved is the median over
   runs of the slowed/original ratio within one run.

Writes benchmarks/results/bench_gate_noise.json (settings, machine, load averages, results,
and every round's median and fastest iteration, so ``--analyse FILE`` can redo step 3).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from itertools import permutations
from pathlib import Path

import numpy as np

from deploypipe.bench.regression_gate import (REGRESSION, CaseRounds, GateSettings, case_seed, judge,
                                   ratio_interval)
from deploypipe.bench.prepare import Case, case_id
from deploypipe.bench.reference import reference_case
from deploypipe.bench.results import RunSettings
from deploypipe.bench.runner import time_cases
from deploypipe.measure.fingerprint import hardware_fingerprint
from deploypipe.targets import load_target
from deploypipe.utils.files import sha256_file, write_json

MODELS = {  # name: (zoo name, per-sample shape)
    "resnet20": ("resnet20", (3, 32, 32)),
    "mobilenet_v2": ("mobilenet_v2", (3, 64, 64)),
    "resnet18": ("resnet18", (3, 112, 112)),
}
OUT = Path("benchmarks/results/bench_gate_noise.json")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=11, help="separate runs (default 11: a "
                   "baseline and 10 identical runs)")
    p.add_argument("--repeats", type=int, default=10, help="interleaved rounds per run")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--slowdowns", default="0.02,0.05,0.1,0.2,0.5,1.0",
                   help="injected slowdowns, comma-separated fractions")
    p.add_argument("--thresholds", default="0.05,0.1,0.2", help="gate thresholds to analyse")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--quiet-load", type=float, default=1.6 * (os.cpu_count() or 1),
                   help="runs below this 1-minute load average count as quiet "
                   "(default: 1.6 x cores)")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--analyse", type=Path, metavar="FILE",
                   help="only redo the analysis from an earlier output's raw rounds")
    return p.parse_args(argv)


# --- models and injected slowdowns ----------------------------------------------------------

def export_models(names: list[str], folder: Path) -> dict[str, tuple[Path, tuple[int, ...]]]:
    import torch

    from deploypipe.export import export_onnx
    from deploypipe.models import create_model

    out = {}
    for name in names:
        zoo, shape = MODELS[name]
        torch.manual_seed(0)
        model = create_model(zoo, num_classes=10, input_size=shape[1:])
        export_onnx(model, folder / f"{name}.onnx", input_shape=(1, *shape))
        out[name] = (folder / f"{name}.onnx", shape)
    return out


def add_extra_conv(src: Path, dst: Path, channels: int, chunk: int = 16) -> Path:
    """Copy ``src`` with a side branch that costs time but not accuracy: 3x3 convs of the
    input to ``channels`` channels in all, averaged, times 0, added to the output. The
    channels come in convs of ``chunk``, so that the cost grows linearly with them (one
    wide conv's output falls out of the cache and costs much more)."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    g = model.graph
    inp, out = g.input[0].name, g.output[0].name
    c_in = g.input[0].type.tensor_type.shape.dim[1].dim_value
    for node in g.node:  # the old output becomes an intermediate
        node.output[:] = ["extra.logits" if o == out else o for o in node.output]
    rng = np.random.default_rng(0)
    sizes = [chunk] * (channels // chunk) + ([channels % chunk] if channels % chunk else [])
    means = []
    for i, k in enumerate(sizes):
        w = rng.standard_normal((k, c_in, 3, 3)).astype(np.float32)
        g.initializer.append(numpy_helper.from_array(w, f"extra{i}.weight"))
        g.node.extend([
            helper.make_node("Conv", [inp, f"extra{i}.weight"], [f"extra{i}.conv"], pads=[1] * 4),
            helper.make_node("ReduceMean", [f"extra{i}.conv"], [f"extra{i}.mean"],
                             axes=[1, 2, 3], keepdims=0)])
        means.append(f"extra{i}.mean")
    g.initializer.extend([numpy_helper.from_array(np.zeros((), np.float32), "extra.zero"),
                          numpy_helper.from_array(np.array([1], np.int64), "extra.axes")])
    g.node.extend([
        helper.make_node("Sum", means, ["extra.sum"]),
        helper.make_node("Mul", ["extra.sum", "extra.zero"], ["extra.scaled"]),
        helper.make_node("Unsqueeze", ["extra.scaled", "extra.axes"], ["extra.col"]),
        helper.make_node("Add", ["extra.logits", "extra.col"], [out]),
    ])
    onnx.save(model, str(dst))
    return dst


def calibrate(base: Path, shape: tuple[int, ...], target, folder: Path,
              slowdowns: list[float], passes: int = 2) -> dict[float, int]:
    """Channels of the extra conv for each slowdown: a first guess from two probe widths
    (fixed cost of the branch + cost per channel), then ``passes`` corrections from the
    slowdown each width achieves against the original in the same rounds."""
    t = round_ratios(base, shape, {1: 1, 64: 64}, target, folder)
    per_channel = max((t[64] - t[1]) / 63, 1e-4)
    fixed = max(t[1] - 1.0 - per_channel, 0.0)
    channels = {s: max(1, round((s - fixed) / per_channel)) for s in slowdowns}
    for _ in range(passes):
        got = round_ratios(base, shape, channels, target, folder)
        channels = {s: max(1, round(k * float(np.clip(s / max(got[s] - 1.0, 1e-3), 0.25, 4.0))))
                    for s, k in channels.items()}
    return channels


def round_ratios(base: Path, shape: tuple[int, ...], channels: dict, target,
                 folder: Path) -> dict:
    """Time the original and one widened copy per key of ``channels`` in 12 interleaved
    rounds; per key, the median over rounds of (widened / original) fastest iteration in
    the same round (the extra work, little affected by other processes preempting us)."""
    paths = {key: add_extra_conv(base, folder / f"cal-{i}.onnx", k)
             for i, (key, k) in enumerate(channels.items())}
    cases = [_case("base", base, shape)] + [_case(f"v{i}", p, shape)
                                            for i, p in enumerate(paths.values())]
    settings = RunSettings(repeats=12, warmup=3, iterations=20, statistic="median", seed=1)
    run = time_cases("calibration", cases, None, target, settings)
    base_rounds = np.asarray(run.cases[0].fastest())
    return {key: float(np.median(np.asarray(c.fastest()) / base_rounds))
            for key, c in zip(paths, run.cases[1:])}


def _case(name: str, path: Path, shape: tuple[int, ...]) -> Case:
    return Case(case_id(name, 1, shape), path, 1, shape, {"name": name}, sha256_file(path))


# --- collection -----------------------------------------------------------------------------

def collect(args: argparse.Namespace, slowdowns: list[float]) -> dict:
    target = dataclasses.replace(load_target("cpu"), name="cpu-1thread", threads=1,
                                 inter_op_threads=1)
    settings = RunSettings(repeats=args.repeats, warmup=args.warmup, iterations=args.iterations,
                           statistic="median", seed=0)
    with tempfile.TemporaryDirectory(prefix="bench-gate-noise-") as tmp:
        folder = Path(tmp)
        cases, channels = [], {}
        for name, (path, shape) in export_models(args.models.split(","), folder).items():
            channels[name] = calibrate(path, shape, target, folder, slowdowns)
            cases.append(_case(name, path, shape))
            for s, k in channels[name].items():
                slowed = add_extra_conv(path, folder / f"{name}-{s}.onnx", k)
                cases.append(_case(f"{name}+{s:g}", slowed, shape))
            print(f"calibrated {name}: extra conv channels {channels[name]}", flush=True)
        ref = reference_case(folder)
        runs = []
        for i in range(args.runs):
            start = time.time()
            run = time_cases("bench_gate_noise", cases, ref, target,
                             dataclasses.replace(settings, seed=i))
            runs.append(_raw(run))
            print(f"run {i + 1}/{args.runs} in {time.time() - start:.0f} s, load average "
                  f"{run.load_average['before']}", flush=True)
    return {"target": target.to_dict(), "settings": settings.to_dict(),
            "extraConvChannels": channels, "runs": runs}


def _raw(run) -> dict:
    """Per case, each round's median and fastest iteration (ms, 4 decimals)."""
    def rounds(c):
        return {"median": [round(x, 4) for x in c.values("median")],
                "fastest": [round(x, 4) for x in c.fastest()]}
    return {"created": run.created, "loadAverage": run.load_average,
            "cases": {c.id.split()[0]: rounds(c) for c in run.cases},
            "reference": rounds(run.reference)}


# --- analysis -------------------------------------------------------------------------------

def analyse(raw: dict, slowdowns: list[float], thresholds: list[float],
            quiet_load: float) -> dict:
    """Noise and achieved slowdowns over all runs; the gate over all pairs of runs, and
    over pairs of quiet runs only (1-minute load average below ``quiet_load``)."""
    runs = raw["runs"]
    models = [m for m in runs[0]["cases"] if "+" not in m]
    quiet = [i for i, r in enumerate(runs) if (r["loadAverage"]["before"] or [0])[0] < quiet_load]
    return {
        "noise": {m: noise(runs, m) for m in models},
        "achievedSlowdown": {m: {f"{s:g}": achieved(runs, m, s) for s in slowdowns}
                             for m in models},
        "allRuns": gate_results(runs, list(range(len(runs))), models, slowdowns, thresholds),
        "quietRuns": {"loadBelow": quiet_load, "runs": quiet,
                      **gate_results(runs, quiet, models, slowdowns, thresholds)},
    }


def gate_results(runs: list[dict], use: list[int], models: list[str], slowdowns: list[float],
                 thresholds: list[float]) -> dict:
    pairs = list(permutations(use, 2))
    out = {"pairs": len(pairs),
           "falseAlarms": {f"{t:g}": false_alarms(runs, use, pairs, models, t) for t in thresholds},
           "detection": {f"{t:g}": {f"{s:g}": detection(runs, pairs, models, s, t)
                                    for s in slowdowns} for t in thresholds}}
    out["smallestDetected90"] = smallest_detected(out["detection"], models)
    return out


def noise(runs: list[dict], model: str) -> dict:
    """CV over rounds within a run (mean over runs) and CV of the runs' medians."""
    per_run = [np.asarray(r["cases"][model]["median"]) for r in runs]
    medians = np.array([np.median(v) for v in per_run])
    return {"medianMs": float(np.median(medians)),
            "repeatCv": float(np.mean([v.std() / v.mean() for v in per_run])),
            "betweenRunCv": float(medians.std() / medians.mean()),
            "runMediansMs": [round(float(m), 4) for m in medians]}


def achieved(runs: list[dict], model: str, s: float) -> dict:
    """The injected slowdown as measured within each run (slowed / original, median over
    runs): of the rounds' fastest iterations (the extra work) and of their medians (what
    the gate sees, inflated when other processes preempt the longer iterations more)."""
    def ratio(key: str) -> float:
        r = [np.median(run["cases"][f"{model}+{s:g}"][key]) / np.median(run["cases"][model][key])
             for run in runs]
        return round(float(np.median(r)) - 1.0, 4)
    return {"fastest": ratio("fastest"), "median": ratio("median")}


def verdict(base_run: dict, cur_run: dict, base_case: str, cur_case: str, t: float) -> str:
    settings = GateSettings(max_slowdown=t)
    b, c = base_run["cases"][base_case], cur_run["cases"][cur_case]
    drift = ratio_interval(base_run["reference"]["median"], cur_run["reference"]["median"],
                           confidence=settings.confidence, resamples=settings.resamples,
                           seed=case_seed("reference"))
    def rounds(r: dict) -> CaseRounds:
        return CaseRounds(tuple(r["median"]), tuple(r["median"]), tuple(r["fastest"]))
    return judge(base_case, rounds(b), rounds(c), settings, drift).status


def false_alarms(runs: list[dict], use: list[int], pairs: list, models: list[str],
                 t: float) -> dict:
    """The first run used as the baseline against the others: how many runs fail; and
    over all ordered pairs of runs, the verdicts of identical cases."""
    first, rest = use[0], use[1:]
    failed = [any(verdict(runs[first], runs[j], m, m, t) == REGRESSION for m in models)
              for j in rest]
    return {"baselineRun": first, "runsFailed": int(sum(failed)), "identicalRuns": len(rest),
            "pairs": _counts([verdict(runs[i], runs[j], m, m, t) for i, j in pairs
                              for m in models])}


def detection(runs: list[dict], pairs: list, models: list[str], s: float, t: float) -> dict:
    """Slowed case in run j against the original in run i, for every pair, per model."""
    return {m: _counts([verdict(runs[i], runs[j], m, f"{m}+{s:g}", t) for i, j in pairs])
            for m in models}


def _counts(verdicts: list[str]) -> dict:
    n = len(verdicts)
    counts = {k: verdicts.count(k) for k in sorted(set(verdicts))}
    return {"n": n, **counts, "regressionRate": round(counts.get(REGRESSION, 0) / n, 3)}


def smallest_detected(detected: dict, models: list[str], rate: float = 0.9) -> dict:
    """Per threshold and model, the smallest injected slowdown caught in >= ``rate`` of pairs."""
    out = {}
    for t, by_s in detected.items():
        out[t] = {}
        for m in models:
            caught = [float(s) for s, d in by_s.items() if d[m]["regressionRate"] >= rate]
            out[t][m] = min(caught) if caught else None
    return out


def summary(results: dict) -> list[str]:
    """A few lines for the console: noise, false alarms, detection at each threshold."""
    lines = [f"{m}: median {n['medianMs']:.3f} ms, CV over rounds {100 * n['repeatCv']:.1f} %, "
             f"CV between runs {100 * n['betweenRunCv']:.1f} %" for m, n in results["noise"].items()]
    for scope in ("allRuns", "quietRuns"):
        r = results[scope]
        for t, fa in r["falseAlarms"].items():
            det = {s: {m: d[m]["regressionRate"] for m in d} for s, d in r["detection"][t].items()}
            lines.append(f"{scope} (+{float(t):.0%}): identical runs failed {fa['runsFailed']}/"
                         f"{fa['identicalRuns']}, identical pairs {fa['pairs']}; caught: {det}")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    slowdowns = [float(x) for x in args.slowdowns.split(",")]
    thresholds = [float(x) for x in args.thresholds.split(",")]
    if args.analyse:
        data = json.loads(args.analyse.read_text())
        raw = data["raw"]
    else:
        started = time.time()
        raw = collect(args, slowdowns)
        data = {"tool": "tools/bench_gate_noise.py", "command": " ".join(sys.argv),
                "fingerprint": hardware_fingerprint().to_dict(), "cpuCount": os.cpu_count(),
                "seconds": round(time.time() - started),
                "conditions": "shared 2-core machine: other engineers ran tests and jobs "
                "meanwhile (their timed runs take the same lock); see the load averages",
                "raw": raw}
    data["analysis"] = {"command": " ".join(sys.argv), "gate": dataclasses.asdict(GateSettings()),
                        "models": {m: {"zoo": z, "inputShape": list(shape), "batch": 1,
                                       "threads": raw["target"]["threads"]}
                                   for m, (z, shape) in MODELS.items()}}
    data["results"] = analyse(raw, slowdowns, thresholds, args.quiet_load)
    data["results"]["loadAverages"] = [r["loadAverage"]["before"] for r in raw["runs"]]
    write_json(args.out, data)
    for line in summary(data["results"]):
        print(line)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
