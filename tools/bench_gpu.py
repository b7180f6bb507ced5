#!/usr/bin/env python3
"""Dense against pruned latency on an NVIDIA GPU: ResNet-50 pruned to half its MACs
(about 2 GMACs, deploypipe's one-shot L1 pruning with widths rounded to multiples of 8 for
the tensor cores), timed with deploypipe's GPU backends in fp32 and fp16.

Weights are random: latency does not depend on their values, only on the widths. Each
(backend, precision, batch) times dense and pruned in alternation, ``--repeats`` times, with
CUDA events on the engine's stream (warm-up excluded); the result is the median of the
repeats' medians and p90s, and the speed-up dense/pruned. The PyTorch/cuDNN backend always
runs; TensorRT and ONNX Runtime's GPU providers run when installed and are listed as
skipped, with the reason, when not.

    python tools/bench_gpu.py --out benchmarks/results/gpu_bench.json
    python tools/bench_gpu.py --smoke          # resnet18, one repeat: checks that it works
    python tools/bench_gpu.py --smoke --device cpu   # checks the script on a machine without a GPU
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parents[1]


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="resnet50")
    p.add_argument("--reduction", type=float, default=2.0, help="MACs reduction (default: 2x)")
    p.add_argument("--round-to", type=int, default=8)
    p.add_argument("--backends", default="torch,trt,ort-trt,ort-cuda",
                   help="torch (eager), torch-compile (slow to compile), trt, ort-trt, ort-cuda")
    p.add_argument("--precisions", default="fp32,fp16")
    p.add_argument("--batches", default="1,32")
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gpu_bench.json"))
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                   help="cpu only checks the script on a machine without a GPU (fp32, torch)")
    return p.parse_args()


def prune(model, shape: tuple[int, ...], reduction: float, round_to: int):
    """deploypipe one-shot pruning to ``reduction``x fewer MACs; (pruned copy, MACs before, after)."""
    from deploypipe.prune.budget import Budget
    from deploypipe.prune.methods import PruneContext, PruneRequest, create_method
    from deploypipe.prune.torch_groups import TorchPruner

    candidate = copy.deepcopy(model)
    pruner = TorchPruner(candidate, shape)
    before = pruner.analysis.macs
    request = PruneRequest(budget=Budget("macs", reduction, "reduction"), importance="l1",
                           round_to=round_to)
    create_method("oneshot").run(PruneContext(pruner, request))
    return candidate, before, pruner.analysis.macs


def engines_for(name: str, models: dict, folder: Path, precision: str, batch: int, shape,
                device: str):
    """{variant: engine} for one backend name, or the reason it cannot run here."""
    import dataclasses

    from deploypipe.backends.compare_targets import COMPARE_BACKENDS
    from deploypipe.backends.torch_cuda import TorchBackend
    from deploypipe.targets import load_target

    base = dataclasses.replace(load_target("gpu-trt-fp16"), precision=precision, batch=batch,
                               input_shape=tuple(shape[1:]))
    key = ("torch-cuda" if device == "cuda" else "torch") if name.startswith("torch") else name
    spec = COMPARE_BACKENDS[key]
    if reason := spec.needs():
        return reason
    target = spec.target(base)
    if name.startswith("torch"):
        backend = TorchBackend(compile=name == "torch-compile")
        return {v: backend.build(m, target) for v, m in models.items()}
    backend = spec.make()
    return {v: backend.build(folder / f"{v}.onnx", target, cache_dir=folder / "cache")
            for v in models}


def bench_backend(name: str, models: dict, folder: Path, shape, args) -> list[dict] | str:
    """Rows for every precision and batch of one backend, or why it cannot run here."""
    rows = []
    for precision in args.precisions.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            engines = engines_for(name, models, folder, precision, batch, shape, args.device)
            if isinstance(engines, str):
                return engines
            row = {"backend": name, "precision": precision, "batch": batch,
                   **measure(engines, batch, args)}
            for engine in engines.values():
                engine.close()
            print(f"{name:14s} {precision} b{batch:<3d} dense {row['dense']['median_ms']:.3f} ms "
                  f"pruned {row['pruned']['median_ms']:.3f} ms  x{row['speedup_median']:.2f} "
                  f"(p90 x{row['speedup_p90']:.2f})", flush=True)
            rows.append(row)
    return rows


def measure(engines: dict, batch: int, args) -> dict:
    """Alternate dense and pruned ``repeats`` times; medians of medians and of p90s."""
    runs: dict[str, list] = {v: [] for v in engines}
    for _ in range(args.repeats):
        for variant, engine in engines.items():
            runs[variant].append(engine.time(batch, args.warmup, args.iterations))
    out = {}
    for variant, stats in runs.items():
        out[variant] = {"median_ms": statistics.median(s.median for s in stats),
                        "p90_ms": statistics.median(s.p90 for s in stats),
                        "cv": statistics.median(s.cv for s in stats),
                        "providers": list(getattr(engines[variant], "providers", []))}
    out["speedup_median"] = out["dense"]["median_ms"] / out["pruned"]["median_ms"]
    out["speedup_p90"] = out["dense"]["p90_ms"] / out["pruned"]["p90_ms"]
    return out


def main() -> int:
    args = parse()
    if args.smoke:
        args.arch, args.batches, args.repeats, args.iterations = "resnet18", "1", 1, 20
    import torch

    from deploypipe.checkpoint import save_checkpoint
    from deploypipe.export import export_onnx
    from deploypipe.measure.fingerprint import hardware_fingerprint
    from deploypipe.models import create_model

    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_gpu: no CUDA device; run this on an NVIDIA GPU host", file=sys.stderr)
        return 2
    if args.device == "cpu":
        args.backends, args.precisions = "torch", "fp32"
    torch.manual_seed(0)
    dense = create_model(args.arch).eval()
    shape = (1, 3, *dense.deploypipe_arch["kwargs"]["input_size"])
    t0 = time.perf_counter()
    pruned, macs_dense, macs_pruned = prune(dense, shape, args.reduction, args.round_to)
    print(f"{args.arch}: {macs_dense / 1e9:.2f} -> {macs_pruned / 1e9:.2f} GMACs in "
          f"{time.perf_counter() - t0:.0f} s", flush=True)
    models = {"dense": dense, "pruned": pruned}
    results, skipped = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for variant, model in models.items():
            export_onnx(model, folder / f"{variant}.onnx", input_shape=shape)
            save_checkpoint(folder / f"{variant}.pt", model, arch=args.arch)
        for name in args.backends.split(","):
            rows = bench_backend(name, models, folder, shape, args)
            if isinstance(rows, str):
                skipped[name] = rows
                print(f"{name:14s} skipped: {rows}", flush=True)
            else:
                results += rows
    doc = {"benchmark": f"dense vs pruned {args.arch} on the GPU",
           "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
           "conditions": {"pruning": f"deploypipe oneshot, l1, {args.reduction:g}x fewer MACs, "
                          f"widths rounded to {args.round_to}, random weights",
                          "timing": f"CUDA events, {args.warmup} warm-up + {args.iterations} "
                          f"iterations, median of {args.repeats} interleaved repeats",
                          "goal": "pruned at about half the MACs at least 1.6x faster (issue 9)"},
           "device": args.device, "macs": {"dense": macs_dense, "pruned": macs_pruned},
           "machine": hardware_fingerprint().to_dict(), "results": results,
           "skipped": skipped}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
