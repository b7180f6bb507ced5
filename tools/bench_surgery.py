#!/usr/bin/env python3
"""ONNX channel surgery on resnet50: how long analyse + shrink take, and whether the MACs it
removes turn into ONNX Runtime latency on this machine (issue 3); dense ORT latency of
resnet18/resnet50 at 224 with its spread (issue 2).

For two resnet50 graphs (deploypipe's zoo export, and the Caffe2 export shipped in the onnx
wheel with its placeholder weights filled in), at ratio 0.5 of every prunable group's
channels (L1, widths rounded to 8):
  * the wall time of analyse (from the loaded model) + plan + shrink, median of 5 runs,
    verification excluded (it is run once and recorded separately);
  * the MAC reduction, and ORT CPU latency of the original and the shrunk model, batch 1
    (the ``cpu`` profile), interleaved repeats so drift hits both alike;
  * speedup / MAC reduction (goal: at least 0.9).

    python tools/bench_surgery.py            # about 5 minutes on 2 cores
    python tools/bench_surgery.py --smoke    # seconds, a tiny model
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parents[1]


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--ratio", type=float, default=0.5)
    p.add_argument("--round-to", type=int, default=8)
    p.add_argument("--runs", type=int, default=5, help="timed analyse + shrink runs")
    p.add_argument("--repeats", type=int, default=5, help="interleaved latency repeats")
    p.add_argument("--iterations", type=int, default=30, help="timed ORT iterations per repeat")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "surgery_resnet50.json"))
    return p.parse_args()


def zoo_onnx(arch: str, size: int, in_channels: int = 3, classes: int = 1000):
    import torch

    from deploypipe.models import create_model
    from deploypipe.prune.torch_groups import export_model

    torch.manual_seed(0)
    model = create_model(arch, num_classes=classes, in_channels=in_channels, input_size=size)
    return export_model(model, (1, in_channels, size, size))


def wheel_resnet50():
    import onnx

    from deploypipe.testing.weights import materialize

    path = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / "light_resnet50.onnx"
    return materialize(onnx.load(str(path)), seed=0)


def time_surgery(model, args) -> tuple[dict, object, object, dict]:
    from deploypipe.graph import analyse, shrink
    from deploypipe.prune.plan import plan_drop

    seconds = {"analyse": [], "plan": [], "shrink": [], "total": []}
    for _ in range(args.runs):
        t0 = time.perf_counter()
        analysis = analyse(model)
        t1 = time.perf_counter()
        drop = plan_drop(analysis, ratio=args.ratio, importance="l1", round_to=args.round_to)
        t2 = time.perf_counter()
        small = shrink(analysis, drop)
        t3 = time.perf_counter()
        for key, value in zip(seconds, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
            seconds[key].append(round(value, 4))
    medians = {k: float(np.median(v)) for k, v in seconds.items()}
    return {"median_s": medians, "runs_s": seconds}, analysis, small, drop


def latency(paths: dict[str, Path], target: str, args) -> dict[str, dict]:
    """Interleaved: every model once per repeat. Median of the per-repeat medians, and the
    pooled per-iteration spread (p90, CV) of the repeat closest to the median."""
    from deploypipe.profiling import profile_onnx

    runs: dict[str, list] = {k: [] for k in paths}
    for _ in range(args.repeats):
        for name, path in paths.items():
            runs[name].append(profile_onnx(path, target, per_layer=False, iterations=args.iterations).stats)
    out = {}
    for name, stats in runs.items():
        medians = [s.median for s in stats]
        mid = stats[int(np.argsort(medians)[len(medians) // 2])]
        out[name] = {"median_ms": float(np.median(medians)), "repeat_medians_ms": [round(m, 3) for m in medians],
                     "p90_ms": mid.p90, "cv_within_repeat": mid.std / mid.mean,
                     "cv_across_repeats": float(np.std(medians) / np.mean(medians))}
    return out


def main() -> int:
    args = parse()
    from deploypipe.graph import analyse, save_onnx, verify_shrink
    from deploypipe.measure.fingerprint import hardware_fingerprint

    cases = {"resnet50_zoo": lambda: zoo_onnx("resnet50", 224),
             "resnet50_onnx_wheel": wheel_resnet50}
    extra_dense = {"resnet18_zoo": lambda: zoo_onnx("resnet18", 224)}
    if args.smoke:
        cases = {"resnet20_zoo": lambda: zoo_onnx("resnet20", 32, in_channels=3, classes=10)}
        extra_dense = {}
        args.runs, args.repeats, args.iterations = 2, 2, 5
    started, load_start = time.perf_counter(), os.getloadavg()
    results = {}
    with tempfile.TemporaryDirectory(prefix="deploypipe-bench-") as tmp:
        paths: dict[str, Path] = {}
        for name, make in cases.items():
            model = make()
            timing, analysis, small, drop = time_surgery(model, args)
            after = analyse(small, normalized=True)
            t0 = time.perf_counter()
            report = verify_shrink(analysis, small, drop)
            verify_s = time.perf_counter() - t0
            paths[name], paths[name + "_shrunk"] = Path(tmp) / f"{name}.onnx", Path(tmp) / f"{name}_shrunk.onnx"
            save_onnx(analysis.model, paths[name])
            save_onnx(small, paths[name + "_shrunk"])
            results[name] = {
                "groups": len(analysis.groups), "groups_pruned": len(drop),
                "channels_removed": int(sum(len(v) for v in drop.values())),
                "macs_before": float(analysis.macs), "macs_after": float(after.macs),
                "mac_reduction": float(analysis.macs / after.macs),
                "params_before": float(analysis.params), "params_after": float(after.params),
                "surgery": timing, "verify_seconds": round(verify_s, 3), "oracle": report.to_dict(),
            }
            print(f"{name}: analyse+plan+shrink median {timing['median_s']['total']:.3f}s, MACs "
                  f"{analysis.macs / 1e9:.2f}G -> {after.macs / 1e9:.2f}G, {report.sentence()}", flush=True)
        for name, make in extra_dense.items():
            paths[name] = Path(tmp) / f"{name}.onnx"
            save_onnx(make(), paths[name])
        lat = latency(paths, "cpu", args)
    for name, row in results.items():
        row["latency"] = {"dense": lat[name], "shrunk": lat[name + "_shrunk"]}
        row["speedup"] = lat[name]["median_ms"] / lat[name + "_shrunk"]["median_ms"]
        row["speedup_over_mac_reduction"] = row["speedup"] / row["mac_reduction"]
        print(f"{name}: {lat[name]['median_ms']:.1f} ms -> {lat[name + '_shrunk']['median_ms']:.1f} ms, "
              f"speedup {row['speedup']:.2f}x for {row['mac_reduction']:.2f}x fewer MACs "
              f"({row['speedup_over_mac_reduction']:.2f} of it)", flush=True)
    dense_only = {name: lat[name] for name in extra_dense}
    doc = {
        "benchmark": "ONNX channel surgery on resnet50: analyse + shrink time, and ORT CPU latency "
                     "of the shrunk graph against the original",
        "command": " ".join(["python", "tools/" + Path(sys.argv[0]).name, *sys.argv[1:]]),
        "conditions": {"ratio": args.ratio, "importance": "l1", "round_to": args.round_to,
                       "surgery_runs": args.runs, "surgery_time": "analyse (from the loaded ModelProto, "
                       "normalisation included) + plan + shrink; verification excluded",
                       "latency": f"ONNX Runtime CPU, cpu profile (batch 1, 224x224, default threads), median of "
                                  f"{args.repeats} interleaved repeats x {args.iterations} iterations",
                       "weights": "random (seed 0); the onnx wheel's ConstantOfShape placeholders filled in",
                       "shared_machine": "2 cores shared with benchmarks training on the other core; "
                                         "see load_average"},
        "load_average": {"start": list(load_start), "end": list(os.getloadavg())},
        "wall_seconds": round(time.perf_counter() - started, 1),
        "machine": hardware_fingerprint().to_dict(), "python": platform.python_version(),
        "results": results, "dense_only": dense_only, "smoke": args.smoke,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(".tmp")
    tmp_out.write_text(json.dumps(doc, indent=2) + "\n")
    tmp_out.replace(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
