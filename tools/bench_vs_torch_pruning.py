#!/usr/bin/env python3
"""deploypipe against Torch-Pruning (1.6.1, MetaPruner, group L2 magnitude), same budgets.

For each architecture (resnet56, mobilenet_v2) trained once on MNIST, and each MACs
budget (2x, 4x fewer), prune with
  * torch-pruning uniform  (MetaPruner, GroupMagnitudeImportance(p=2), global_pruning=False)
  * torch-pruning global   (the same, global_pruning=True)
  * deploypipe uniform     (oneshot, l2, --allocation uniform)
  * deploypipe global      (oneshot, l2, --allocation global)
to the same MACs (torch-pruning's ratio is bisected until its MACs meet the budget), fine-tune
every pruned model the same number of epochs, and record test accuracy, MACs, parameters,
measured ONNX Runtime latency (median of repeated, interleaved runs in this process) and
the wall time of the pruning step. Writes JSON to benchmarks/results/.

    python tools/bench_vs_torch_pruning.py            # the full run (~1 h on 2 cores)
    python tools/bench_vs_torch_pruning.py --smoke    # a minute, to check it works
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parents[1]


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--archs", default="resnet56,mobilenet_v2")
    p.add_argument("--budgets", default="2,4")
    p.add_argument("--train-limit", type=int, default=6000, help="training images per split (subset of MNIST)")
    p.add_argument("--pretrain-epochs", type=int, default=6)
    p.add_argument("--finetune-epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--pretrain-lr", type=float, default=0.05)
    p.add_argument("--repeats", type=int, default=7, help="interleaved latency repeats (--latency-only)")
    p.add_argument("--threads", type=int, default=1, help="torch threads for training (the machine has 2 cores)")
    p.add_argument("--latency-only", action="store_true",
                   help="no training: time uniform widths (torch-pruning, deploypipe unrounded and rounded to "
                        "the cpu targets' multiple of 8) on randomly initialised models, interleaved")
    p.add_argument("--out", default=None, help="default: benchmarks/results/vs_torch_pruning[_latency].json")
    args = p.parse_args()
    if args.out is None:
        name = "vs_torch_pruning_latency.json" if args.latency_only else "vs_torch_pruning.json"
        args.out = str(ROOT / "benchmarks" / "results" / name)
    return args


def latency_only(args) -> int:
    """Latency depends on the widths alone: uniform allocations (which do not depend on the
    weights) timed with random weights, the widths rounded to 8 or not."""
    from deploypipe.measure.fingerprint import hardware_fingerprint
    from deploypipe.models import create_model

    shape, started, load_start = (1, 1, 28, 28), time.perf_counter(), os.getloadavg()
    results = []
    for arch in args.archs.split(","):
        torch.manual_seed(0)
        dense = create_model(arch, num_classes=10, in_channels=1, input_size=28)
        dense_macs = macs_of(dense, shape)
        for bx in (float(b) for b in args.budgets.split(",")):
            models = {"torch_pruning_uniform": tp_prune(dense, shape, dense_macs / bx, False)[0],
                      "deploypipe_uniform": dp_prune(dense, shape, bx, "uniform")[0],
                      "deploypipe_uniform_round8": dp_prune(dense, shape, bx, "uniform", round_to=8)[0]}
            lat = latency({"dense": dense, **models}, shape, repeats=args.repeats, iterations=100)
            row = {"arch": arch, "budget_x": bx, "dense": {"macs": dense_macs, "latency_ms": lat["dense"]},
                   "variants": {}, "load_average": list(os.getloadavg())}
            for name, m in models.items():
                widths = [int(c.out_channels) for c in m.modules() if isinstance(c, torch.nn.Conv2d)]
                row["variants"][name] = {
                    "macs": macs_of(m, shape), "latency_ms": lat[name],
                    "speedup": {b: lat["dense"][b] / lat[name][b] for b in lat[name]},
                    "conv_widths_multiple_of_8": sum(w % 8 == 0 for w in widths) / len(widths)}
                print(f"{arch} {bx:g}x {name:26s} batch32 {lat[name]['batch32']:.2f} ms "
                      f"({row['variants'][name]['speedup']['batch32']:.2f}x), batch1 {lat[name]['batch1']:.3f} ms",
                      flush=True)
            results.append(row)
    doc = {"benchmark": "latency of uniform widths, rounded to 8 or not, against torch-pruning's (no training)",
           "command": " ".join(["python", "tools/" + Path(sys.argv[0]).name, *sys.argv[1:]]),
           "conditions": {"input": list(shape), "weights": "random (latency depends on widths only)",
                          "latency": f"ONNX Runtime CPU, median of {args.repeats} interleaved repeats of 100 "
                                     "(batch 1, cpu profile, default threads) / 25 (batch 32, cpu-batch32, "
                                     "1 thread) iterations"},
           "load_average": {"start": list(load_start), "end": list(os.getloadavg())},
           "wall_seconds": round(time.perf_counter() - started, 1),
           "machine": hardware_fingerprint().to_dict(), "results": results}
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


def macs_of(model: torch.nn.Module, shape) -> float:
    from deploypipe.graph import analyse
    from deploypipe.prune.torch_groups import export_model

    return float(analyse(export_model(model, shape)).macs)


def tp_once(model, shape, ratio: float, global_pruning: bool):
    import torch_pruning as tp

    candidate = copy.deepcopy(model)
    fc = [m for m in candidate.modules() if isinstance(m, torch.nn.Linear)][-1]
    start = time.perf_counter()
    pruner = tp.pruner.MetaPruner(candidate, torch.randn(*shape), importance=tp.importance.GroupMagnitudeImportance(p=2),
                                  pruning_ratio=ratio, global_pruning=global_pruning, ignored_layers=[fc])
    pruner.step()
    return candidate, time.perf_counter() - start


def tp_prune(model, shape, target_macs: float, global_pruning: bool):
    """Torch-Pruning to ``target_macs`` as counted on the exported graph (the same counter as
    deploypipe's, so both sides meet the same budget): bisect MetaPruner's ratio. The time
    reported is one MetaPruner construction + step at the ratio found, not the search."""
    lo, hi, best_ratio = 0.0, 0.95, None
    for _ in range(12):
        mid = (lo + hi) / 2
        candidate, _ = tp_once(model, shape, mid, global_pruning)
        if macs_of(candidate, shape) <= target_macs:
            best_ratio, hi = mid, mid
        else:
            lo = mid
    if best_ratio is None:
        return None, 0.0
    return tp_once(model, shape, best_ratio, global_pruning)


def dp_prune(model, shape, budget_x: float, allocation: str, round_to: int = 1):
    from deploypipe.prune.budget import Budget
    from deploypipe.prune.methods import PruneContext, PruneRequest, create_method
    from deploypipe.prune.torch_groups import TorchPruner

    candidate = copy.deepcopy(model)
    start = time.perf_counter()
    pruner = TorchPruner(candidate, shape)
    request = PruneRequest(budget=Budget("macs", budget_x, "reduction"), importance="l2", allocation=allocation,
                           round_to=round_to)
    create_method("oneshot").run(PruneContext(pruner, request))
    return candidate, time.perf_counter() - start


def latency(models: dict[str, torch.nn.Module], shape, repeats: int, iterations: int) -> dict[str, dict]:
    """Interleaved ORT timings: every model once per repeat, so drift hits all alike."""
    from _benchlib import interleaved_latency

    return interleaved_latency(models, shape, {"batch1": ("cpu", iterations),
                                               "batch32": ("cpu-batch32", max(5, iterations // 4))}, repeats)


def main() -> int:
    args = parse()
    if args.latency_only:
        torch.set_num_threads(args.threads)
        return latency_only(args)
    if args.smoke:
        args.archs, args.budgets = "resnet20", "2"
        args.train_limit, args.pretrain_epochs, args.finetune_epochs = 300, 1, 1
    torch.set_num_threads(args.threads)
    from deploypipe.data import load_dataset
    from deploypipe.measure.fingerprint import hardware_fingerprint
    from deploypipe.models import create_model
    from deploypipe.train import TrainConfig, evaluate, fit

    data = load_dataset("mnist", seed=0, limit=args.train_limit)
    shape = (1, *data.input_shape)
    results = []
    started, load_start = time.perf_counter(), os.getloadavg()

    def write() -> None:
        doc = {
            "benchmark": "deploypipe vs torch-pruning 1.6.1 (MetaPruner, GroupMagnitudeImportance p=2)",
            "command": " ".join(["python", "tools/" + Path(sys.argv[0]).name, *sys.argv[1:]]),
            "conditions": {"dataset": f"MNIST ({data.source})",
                           "subset": {"train": len(data.train), "val": len(data.val), "test": len(data.test)},
                           "batch_size": args.batch_size,
                           "pretrain": {"epochs": args.pretrain_epochs, "lr": args.pretrain_lr, "warmup_epochs": 1,
                                        "schedule": "cosine"},
                           "finetune": {"epochs": args.finetune_epochs, "lr": 0.01, "schedule": "cosine"},
                           "importance": "group L2 magnitude on both sides; the classifier is never pruned",
                           "budget": "MACs counted on the exported ONNX graph by the same counter for both tools; "
                                     "torch-pruning's ratio bisected until its MACs meet the budget",
                           "latency": "ONNX Runtime CPU, median of 5 interleaved repeats of 100 (batch 1) / 25 "
                                      "(batch 32) iterations; 'batch1' = the cpu profile (default threads), "
                                      "'batch32' = cpu-batch32 (1 thread)",
                           "torch_threads": args.threads, "smoke": args.smoke,
                           "shared_machine": "2 cores, shared with another benchmark training on the other core: "
                                             "latencies carry that load (see load_average)"},
            "load_average": {"start": list(load_start), "end": list(os.getloadavg())},
            "wall_seconds": round(time.perf_counter() - started, 1),
            "machine": hardware_fingerprint().to_dict(), "python": platform.python_version(),
            "torch": torch.__version__, "results": results,
        }
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(args.out).with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        tmp.replace(args.out)

    for arch in args.archs.split(","):
        torch.manual_seed(0)
        dense = create_model(arch, num_classes=data.num_classes, in_channels=data.in_channels,
                             input_size=data.image_size)
        t0 = time.perf_counter()
        fit(dense, data, TrainConfig(epochs=args.pretrain_epochs, batch_size=args.batch_size, lr=args.pretrain_lr,
                                     warmup_epochs=min(1.0, args.pretrain_epochs), progress=False))
        pretrain_seconds = time.perf_counter() - t0
        dense_acc = evaluate(dense, data.test)
        dense_macs = macs_of(dense, shape)
        print(f"{arch}: dense {dense_acc:.4f} in {time.perf_counter() - t0:.0f}s, {dense_macs / 1e6:.1f} MMACs",
              flush=True)
        for bx in (float(b) for b in args.budgets.split(",")):
            variants = {}
            timings = {}
            variants["torch_pruning_uniform"], timings["torch_pruning_uniform"] = tp_prune(dense, shape, dense_macs / bx, False)
            variants["torch_pruning_global"], timings["torch_pruning_global"] = tp_prune(dense, shape, dense_macs / bx, True)
            variants["deploypipe_uniform"], timings["deploypipe_uniform"] = dp_prune(dense, shape, bx, "uniform")
            variants["deploypipe_global"], timings["deploypipe_global"] = dp_prune(dense, shape, bx, "global")
            rows = {}
            for name, model in variants.items():
                if model is None:
                    rows[name] = {"error": "could not reach the budget"}
                    continue
                before = evaluate(model, data.test)
                fit(model, data, TrainConfig(epochs=args.finetune_epochs, batch_size=args.batch_size, lr=0.01,
                                             progress=False))
                rows[name] = {"accuracy_before_finetune": before, "accuracy": evaluate(model, data.test),
                              "macs": macs_of(model, shape),
                              "params": sum(p.numel() for p in model.parameters()),
                              "prune_seconds": round(timings[name], 3)}
                print(f"  {bx:g}x {name:24s} acc {rows[name]['accuracy']:.4f} macs {rows[name]['macs'] / 1e6:.2f}M "
                      f"prune {timings[name]:.2f}s", flush=True)
            live = {k: v for k, v in variants.items() if v is not None}
            lat = latency({"dense": dense, **live}, shape, repeats=3 if args.smoke else 5,
                          iterations=20 if args.smoke else 100)
            for name in live:
                rows[name]["latency_ms"] = lat[name]
            results.append({"arch": arch, "budget_x": bx, "dense": {"accuracy": dense_acc, "macs": dense_macs,
                            "params": sum(p.numel() for p in dense.parameters()), "latency_ms": lat["dense"],
                            "pretrain_seconds": round(pretrain_seconds, 1)},
                            "variants": rows, "load_average": list(os.getloadavg())})
            write()
    write()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
