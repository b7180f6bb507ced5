#!/usr/bin/env python3
"""Seed methods I on ResNet-56 / MNIST: Group Fisher (memory- and MAC-normalised), IncReg
and GReg-2 against one-shot L1 and Taylor pruning with fine-tuning, at 2x and 4x fewer MACs.

One dense model is trained once; every method starts from a copy of it and gets the same
number of training steps after that (``--epochs`` epochs of the training subset): one-shot
methods fine-tune for all of them; the methods that prune while they train (group_fisher,
increg, greg2) spend about ``--prune-epochs`` of them pruning and fine-tune for the rest
(the steps actually taken are recorded). Their schedules are compressed to fit that
phase (the papers' schedules take tens of thousands of iterations): the hyperparameters
derived from it are written into the JSON. Every pruned model is rounded to multiples of
8 channels (the cpu-batch32 target), exported to ONNX and checked against PyTorch; latency
is ONNX Runtime on ``cpu-batch32`` (batch 32, one thread), the median of interleaved
repeats. Writes JSON to benchmarks/results/.

    python tools/bench_seed_methods_1.py            # the full run (about an hour on 2 cores)
    python tools/bench_seed_methods_1.py --smoke    # about a minute, to check it works
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from _benchlib import load_mnist_subset

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parents[1]
ROUND_TO = 8
FINETUNE_LR = 0.01
VARIANTS = ("l1", "taylor", "group_fisher_memory", "group_fisher_macs", "increg", "greg2")


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny run (resnet20, 200 images) to check the script")
    p.add_argument("--arch", default="resnet56")
    p.add_argument("--budgets", default="2,4", help="MACs reductions")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--train-limit", type=int, default=4000, help="training images (subset of MNIST's 60,000)")
    p.add_argument("--val-limit", type=int, default=500)
    p.add_argument("--test-limit", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--pretrain-epochs", type=int, default=4)
    p.add_argument("--epochs", type=int, default=4, help="training epochs after pre-training, for every method")
    p.add_argument("--prune-epochs", type=float, default=2.0, help="target length of in-training pruning")
    p.add_argument("--repeats", type=int, default=3, help="interleaved latency repeats")
    p.add_argument("--iterations", type=int, default=30, help="timed ORT iterations per repeat")
    p.add_argument("--dense-checkpoint", help="reuse the dense model saved here (trained and saved if missing)")
    p.add_argument("--remeasure", action="store_true",
                   help="only time again the models of an existing --out JSON (rebuilt at its widths)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "seed_methods_1.json"))
    args = p.parse_args()
    if args.smoke:
        args.arch, args.budgets = "resnet20", "2"
        args.train_limit, args.val_limit, args.test_limit = 200, 100, 200
        args.pretrain_epochs, args.epochs, args.prune_epochs = 1, 2, 1.0
        args.repeats, args.iterations = 1, 5
        args.out = str(Path(args.out).with_name("seed_methods_1_smoke.json"))
    return args


# -- data and the dense model -------------------------------------------------------------------
def load_data(args):
    return load_mnist_subset(args.train_limit, args.val_limit, args.test_limit)


def steps_per_epoch(data, batch: int) -> int:
    from deploypipe.train import make_loader

    return len(make_loader(data.train, batch, shuffle=True))


# -- the methods ----------------------------------------------------------------------------
def method_params(variant: str, prune_steps: int, removals: int) -> tuple[str, str, dict]:
    """(method, importance, params) with the in-training schedules compressed to about
    ``prune_steps`` iterations; ``removals`` estimates the channels a method removes."""
    p = max(prune_steps, 8)
    if variant in ("l1", "taylor"):
        return "oneshot", variant, {}
    if variant.startswith("group_fisher"):
        # scores over d = 5 batches, then enough channels per removal step to finish in ~0.8 p
        # (the paper: 1 channel per 25 batches of 256); lr 0.4 x 0.01 = 0.04 x the
        # pre-training rate 0.1, as in the paper.
        d = 5
        return "group_fisher", "l1", {"normalize": variant.rsplit("_", 1)[1], "d": d,
                                      "per_step": max(1, math.ceil(removals * d / (0.8 * p))), "lr_scale": 0.4,
                                      "slim_every": 64}
    if variant == "increg":
        # all of a group's channels go after 2.4-5.3 x target/A rankings; target/A = p/5.
        target = 10.0
        return "increg", "l1", {"interval": 1, "target": target, "A": 5 * target / p, "lr_scale": 1.0,
                                "slim_every": 64}
    if variant == "greg2":
        # uniform penalty 0 -> 1e-2 in p/10 rankings, picked channels to 1 in p/2, stabilise p/5.
        return "greg2", "l1", {"interval": 1, "pick_delta": 1e-2 / max(1, p // 10), "pick_ceiling": 1e-2,
                               "delta": 1.0 / max(1, p // 2), "ceiling": 1.0, "stabilize": max(1, p // 5),
                               "lr_scale": 1.0}
    raise SystemExit(f"unknown variant {variant!r}")


def uniform_removals(dense, shape, budget_x: float) -> int:
    """Channels that the uniform L1 allocation removes at this budget (a size estimate)."""
    from deploypipe.prune.budget import Budget
    from deploypipe.prune.methods import PruneContext, PruneRequest
    from deploypipe.prune.torch_groups import TorchPruner

    pruner = TorchPruner(copy.deepcopy(dense), shape)
    ctx = PruneContext(pruner, PruneRequest(budget=Budget("macs", budget_x, "reduction"), round_to=ROUND_TO))
    keep = ctx.keep_for(ctx.request.budget, ctx.scores("l1"))
    return int(sum(pruner.widths()[g.id] - keep[g.id] for g in pruner.prunable))


def run_variant(variant: str, dense, data, shape, budget_x: float, args, removals: int) -> tuple[dict, torch.nn.Module]:
    from deploypipe.prune.budget import Budget
    from deploypipe.prune.methods import PruneContext, PruneRequest, create_method
    from deploypipe.prune.torch_groups import TorchPruner
    from deploypipe.train import TrainConfig, evaluate, fit

    per_epoch = steps_per_epoch(data, args.batch_size)
    total = args.epochs * per_epoch
    method, importance, params = method_params(variant, round(args.prune_epochs * per_epoch), removals)
    model = copy.deepcopy(dense)
    pruner = TorchPruner(model, shape)
    request = PruneRequest(budget=Budget("macs", budget_x, "reduction"), importance=importance,
                           round_to=ROUND_TO, params=params)
    config = TrainConfig(epochs=1, batch_size=args.batch_size, lr=FINETUNE_LR, progress=False)
    ctx = PruneContext(pruner, request, data=data, train_config=config)
    start = time.perf_counter()
    create_method(method, params).run(ctx)
    prune_seconds = time.perf_counter() - start
    prune_steps = int(ctx.rounds[-1].get("iteration", 0)) if ctx.rounds else 0
    accuracy_pruned = evaluate(model, data.test)
    left = max(total - prune_steps, per_epoch // 2)
    epochs = max(1, math.ceil(left / per_epoch))
    start = time.perf_counter()
    result = fit(model, data, dataclasses.replace(config, epochs=epochs, max_steps_per_epoch=math.ceil(left / epochs)))
    row = {"method": method, "importance": importance, "params": params,
           "accuracy": evaluate(model, data.test), "accuracy_before_finetune": accuracy_pruned,
           "macs": float(pruner.analysis.macs), "params_count": float(pruner.analysis.params),
           "budget_met": float(pruner.analysis.macs) <= float(ctx.dense_macs) / budget_x * (1 + 1e-9),
           "widths": [int(w) for w in pruner.widths()],
           "steps": {"prune": prune_steps, "finetune": result.steps, "total": prune_steps + result.steps},
           "forced": bool(ctx.rounds and ctx.rounds[-1].get("forced", False)),
           "seconds": {"prune": round(prune_seconds, 1), "finetune": round(time.perf_counter() - start, 1)}}
    return row, model


# -- latency ----------------------------------------------------------------------------------
def latency(models: dict[str, torch.nn.Module], shape, repeats: int, iterations: int) -> dict[str, dict]:
    """cpu-batch32 ORT medians of interleaved repeats, and each export checked against torch."""
    from deploypipe.export import export_onnx, verify_onnx
    from deploypipe.profiling import profile_onnx

    times: dict[str, list[float]] = {k: [] for k in models}
    parity: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for name, model in models.items():
            paths[name] = Path(tmp) / f"{name}.onnx"
            export_onnx(model, paths[name], input_shape=shape)
            report = verify_onnx(model, paths[name])
            report.check()
            parity[name] = float(report.max_abs)
        for _ in range(repeats):
            for name, path in paths.items():
                result = profile_onnx(path, "cpu-batch32", per_layer=False, iterations=iterations)
                times[name].append(result.stats.median)
    return {k: {"median_ms": float(np.median(v)), "repeats_ms": v, "torch_vs_onnx_max_abs": parity[k]}
            for k, v in times.items()}


def memory_vs_macs(rows: dict, dense_ms: float, key: str = "latency") -> dict | None:
    """Group Fisher memory- vs MAC-normalised at the same MACs budget (paper: 1.79x vs 1.39x)."""
    mem, mac = rows.get("group_fisher_memory"), rows.get("group_fisher_macs")
    if not mem or not mac:
        return None

    def side(row: dict) -> dict:
        ms = row[key]["median_ms"]
        return {"macs": row["macs"], "latency_ms": ms, "speedup": dense_ms / ms, "accuracy": row["accuracy"]}

    return {"memory": side(mem), "macs": side(mac),
            "memory_over_macs_speed": mac[key]["median_ms"] / mem[key]["median_ms"],
            "paper": {"memory_speedup": 1.79, "flops_speedup": 1.39, "model": "ResNet-50 / ImageNet, GPU"}}


def at_widths(arch: str, widths: list[int] | None, shape) -> torch.nn.Module:
    """``arch`` at ``widths`` with random weights: latency depends on the widths only."""
    from deploypipe.models import create_model
    from deploypipe.prune.torch_groups import TorchPruner

    torch.manual_seed(0)
    model = create_model(arch, num_classes=10, in_channels=shape[1], input_size=shape[2])
    if widths is not None:
        pruner = TorchPruner(model, shape)
        drop = {g.id: np.arange(widths[g.id], g.width) for g in pruner.groups if g.width > widths[g.id]}
        pruner.apply(drop)
        if [int(w) for w in pruner.widths()] != list(widths):
            raise SystemExit(f"could not rebuild {arch} at {widths}")
    return model.eval()


def remeasure(args) -> int:
    """Time the models of ``args.out`` again (interleaved, ``args.repeats``) and add the
    results beside the first measurement, for runs whose timings the machine's load spoiled."""
    doc = json.loads(Path(args.out).read_text())
    arch = doc["conditions"]["arch"]
    shape = tuple(doc["conditions"].get("input_shape", (1, 1, 28, 28)))
    load_start = os.getloadavg()
    for result in doc["results"]:
        models = {"dense": at_widths(arch, None, shape)}
        models.update({k: at_widths(arch, v["widths"], shape) for k, v in result["variants"].items()})
        lat = latency(models, shape, args.repeats, args.iterations)
        dense_ms = lat["dense"]["median_ms"]
        result["dense"]["latency_remeasured"] = lat["dense"]
        for name, row in result["variants"].items():
            row["latency_remeasured"] = lat[name]
            row["speedup_remeasured"] = dense_ms / lat[name]["median_ms"]
        result["memory_vs_macs_normalised_remeasured"] = memory_vs_macs(result["variants"], dense_ms,
                                                                        "latency_remeasured")
        print(f"{result['budget_x']:g}x remeasured: " + ", ".join(
            f"{k} {v['median_ms']:.1f}ms" for k, v in lat.items()), flush=True)
    doc["remeasured"] = {
        "command": " ".join(["python", "tools/" + Path(sys.argv[0]).name, *sys.argv[1:]]),
        "how": "models rebuilt at the recorded widths with random weights (latency depends on widths only), "
               f"cpu-batch32, median of {args.repeats} interleaved repeats x {args.iterations} iterations",
        "load_average_start_end": [list(load_start), list(os.getloadavg())]}
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(f"updated {args.out}")
    return 0


def main() -> int:
    args = parse()
    torch.set_num_threads(1)
    if args.remeasure:
        return remeasure(args)
    from deploypipe.measure.fingerprint import hardware_fingerprint
    from deploypipe.models import create_model
    from deploypipe.train import TrainConfig, evaluate, fit

    load_start = os.getloadavg()
    started = time.perf_counter()
    data = load_data(args)
    shape = (1, *data.input_shape)
    torch.manual_seed(0)
    dense = create_model(args.arch, num_classes=data.num_classes, in_channels=data.in_channels,
                         input_size=data.image_size)
    cache = Path(args.dense_checkpoint) if args.dense_checkpoint else None
    if cache is not None and cache.exists():
        dense.load_state_dict(torch.load(cache, weights_only=True))
    else:
        fit(dense, data, TrainConfig(epochs=args.pretrain_epochs, batch_size=args.batch_size, lr=0.1, progress=False))
        if cache is not None:
            torch.save(dense.state_dict(), cache)
    dense_acc = evaluate(dense, data.test)
    print(f"{args.arch}: dense {dense_acc:.4f} after {time.perf_counter() - started:.0f}s", flush=True)
    results = []
    for budget_x in (float(b) for b in args.budgets.split(",")):
        removals = uniform_removals(dense, shape, budget_x)
        rows, models = {}, {}
        for variant in args.variants.split(","):
            rows[variant], models[variant] = run_variant(variant, dense, data, shape, budget_x, args, removals)
            r = rows[variant]
            print(f"  {budget_x:g}x {variant:20s} acc {r['accuracy']:.4f} MACs {r['macs'] / 1e6:6.2f}M "
                  f"steps {r['steps']['prune']}+{r['steps']['finetune']} {sum(r['seconds'].values()):.0f}s",
                  flush=True)
        lat = latency({"dense": dense, **models}, shape, args.repeats, args.iterations)
        for variant, row in rows.items():
            row["latency"] = lat[variant]
            row["speedup"] = lat["dense"]["median_ms"] / lat[variant]["median_ms"]
        dense_row = {"accuracy": dense_acc, "latency": lat["dense"],
                     "params_count": float(sum(p.numel() for p in dense.parameters()))}
        results.append({"budget_x": budget_x, "uniform_l1_removals": removals, "dense": dense_row,
                        "variants": rows,
                        "memory_vs_macs_normalised": memory_vs_macs(rows, lat["dense"]["median_ms"])})
    per_epoch = steps_per_epoch(data, args.batch_size)
    doc = {
        "benchmark": "seed methods I: group_fisher (memory, macs), increg, greg2 vs one-shot l1 and taylor",
        "command": " ".join(["python", "tools/" + Path(sys.argv[0]).name, *sys.argv[1:]]),
        "conditions": {
            "arch": args.arch, "input_shape": list(shape), "dataset": f"MNIST ({data.source})",
            "subset": {"train": len(data.train), "val": len(data.val), "test": len(data.test)},
            "batch_size": args.batch_size, "pretrain": {"epochs": args.pretrain_epochs, "lr": 0.1},
            "training_after_pretrain": {"epochs": args.epochs, "steps": args.epochs * per_epoch,
                                        "steps_per_epoch": per_epoch, "finetune_lr": FINETUNE_LR,
                                        "schedule": "cosine", "prune_phase_target_epochs": args.prune_epochs},
            "round_to": ROUND_TO, "budgets": "MACs reduction, measured on the exported graph",
            "latency": f"ONNX Runtime CPU, cpu-batch32 target (batch 32, 1 thread), median of {args.repeats} "
                       f"interleaved repeats x {args.iterations} iterations",
            "torch_threads": 1, "smoke": args.smoke,
            "shared_machine": "2 cores shared with other engineers' jobs: timings carry their load",
            "load_average_start_end": [list(load_start), list(os.getloadavg())],
            "wall_seconds": round(time.perf_counter() - started, 1),
        },
        "machine": hardware_fingerprint().to_dict(), "python": platform.python_version(),
        "torch": torch.__version__, "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out} after {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
