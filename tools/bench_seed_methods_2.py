#!/usr/bin/env python3
"""Seed methods II on MNIST: CPLI (without and with fine-tuning) and cascaded
self-distillation (0, 1 and 2 teaching assistants) against one-shot L1 and one-shot L1 with
direct distillation from the dense model, at 2x and 4x fewer MACs, on resnet56 and vgg16_bn.

One dense model per architecture is trained once; every variant starts from a copy of it
and then gets the same number of training epochs (``--epochs``): l1, kd and cpli fine-tune
for all of them after pruning (kd distils from the dense model, alpha 0.9, tau 4); the
cascade variants train for all of them with their own loss (pruning during the first half);
"cpli_noft" is the CPLI model before its fine-tuning (0 epochs). Widths are rounded to
multiples of 8 (the cpu-batch32 target's channel multiple). Latency: ONNX Runtime on
``cpu-batch32`` (batch 32, one thread), median of interleaved repeats; each export is
checked against PyTorch. The oracles are checked by the test-suite (build's verification),
not here, to save time. Writes JSON to benchmarks/results/.

Run it under the shared measurement lock, so timed runs of different engineers do not
overlap (the JSON records whether the lock was held):

    flock /tmp/deploypipe-measure.lock python tools/bench_seed_methods_2.py           # about an hour
    flock /tmp/deploypipe-measure.lock python tools/bench_seed_methods_2.py --smoke   # about a minute
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # before numpy/torch load:
    os.environ.setdefault(_var, "1")  # threaded BLAS spin-waits badly on shared cores

import argparse  # noqa: E402
import copy
import json
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from _benchlib import LOCK, git_state, load_mnist_subset, lock_held

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parents[1]
ROUND_TO = 8
FINETUNE_LR = 0.01
VARIANTS = ("l1", "kd", "cpli", "cascade0", "cascade1", "cascade2")


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny run (resnet20, 200 images) to check the script")
    p.add_argument("--archs", default="resnet56,vgg16_bn")
    p.add_argument("--budgets", default="2,4", help="MACs reductions")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--train-limit", type=int, default=1024, help="training images (subset of MNIST's 60,000)")
    p.add_argument("--val-limit", type=int, default=200)
    p.add_argument("--test-limit", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--pretrain-epochs", type=int, default=4)
    p.add_argument("--pretrain-lr", type=float, default=0.05)
    p.add_argument("--pretrain-warmup", type=float, default=1.0, help="warm-up epochs of the pre-training")
    p.add_argument("--epochs", type=int, default=1, help="training epochs after pruning, for every variant")
    p.add_argument("--cpli-samples", type=int, default=128, help="CPLI calibration images")
    p.add_argument("--threads", type=int, default=1, help="torch threads for training (latency: 1, the target's)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved latency repeats")
    p.add_argument("--iterations", type=int, default=10, help="timed ORT iterations per repeat")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "seed_methods_2.json"))
    args = p.parse_args()
    if args.smoke:
        args.archs, args.budgets = "resnet20", "2"
        args.train_limit, args.val_limit, args.test_limit = 200, 100, 200
        args.pretrain_epochs, args.epochs, args.cpli_samples = 1, 1, 64
        args.repeats, args.iterations = 1, 5
        args.out = str(Path(args.out).with_name("seed_methods_2_smoke.json"))
    return args


# -- data and the dense model -------------------------------------------------------------------
def load_data(args):
    return load_mnist_subset(args.train_limit, args.val_limit, args.test_limit)


def train_dense(arch: str, data, args) -> tuple[torch.nn.Module, float, float]:
    from deploypipe.models import create_model
    from deploypipe.train import TrainConfig, evaluate, fit

    torch.manual_seed(0)
    model = create_model(arch, num_classes=data.num_classes, in_channels=data.in_channels,
                         input_size=data.image_size)
    start = time.perf_counter()
    fit(model, data, TrainConfig(epochs=args.pretrain_epochs, batch_size=args.batch_size, lr=args.pretrain_lr,
                                 warmup_epochs=min(args.pretrain_warmup, args.pretrain_epochs), progress=False))
    return model, evaluate(model, data.test), time.perf_counter() - start


# -- the variants -------------------------------------------------------------------------------
def train_config(args, distill: bool = False):
    from deploypipe.train import DistillConfig, TrainConfig

    return TrainConfig(epochs=max(1, args.epochs), batch_size=args.batch_size, lr=FINETUNE_LR, progress=False,
                       distill=DistillConfig() if distill else None)


def context(model, data, shape, budget_x: float, args, *, teacher=None, importance: str = "l1"):
    from deploypipe.prune.budget import Budget
    from deploypipe.prune.methods import PruneContext, PruneRequest
    from deploypipe.prune.torch_groups import TorchPruner

    request = PruneRequest(budget=Budget("macs", budget_x, "reduction"), importance=importance, round_to=ROUND_TO)
    return PruneContext(TorchPruner(model, shape), request, data=data, teacher=teacher,
                        train_config=train_config(args, distill=teacher is not None))


def finetune(model, data, args, teacher=None) -> tuple[float, int]:
    from deploypipe.train import fit

    if args.epochs <= 0:
        return 0.0, 0
    start = time.perf_counter()
    result = fit(model, data, train_config(args, distill=teacher is not None), teacher=teacher)
    return time.perf_counter() - start, result.steps


def row(ctx, model, data, budget_x: float, **extra) -> dict:
    from deploypipe.train import evaluate

    macs = float(ctx.pruner.analysis.macs)
    return {"accuracy": evaluate(model, data.test), "macs": macs, "dense_macs": float(ctx.dense_macs),
            "params_count": float(ctx.pruner.analysis.params),
            "budget_met": macs <= ctx.dense_macs / budget_x * (1 + 1e-9),
            "widths": [int(w) for w in ctx.pruner.widths()], **extra}


def run_variant(variant: str, dense, data, shape, budget_x: float, args) -> dict[str, tuple[dict, torch.nn.Module]]:
    """Rows (and models) of one variant; cpli gives two rows, before and after fine-tuning."""
    from deploypipe.prune.methods import create_method

    model = copy.deepcopy(dense)
    teacher = copy.deepcopy(dense).eval() if variant == "kd" else None
    ctx = context(model, data, shape, budget_x, args, teacher=teacher)
    if variant in ("l1", "kd"):
        method, params = "oneshot", {}
    elif variant == "cpli":
        method, params = "cpli", {"samples": args.cpli_samples}
    else:
        method, params = "cascade", {"assistants": int(variant[-1])}
    start = time.perf_counter()
    create_method(method, params).run(ctx)
    prune_s = time.perf_counter() - start
    info = {"method": method, "params": params, "distill": teacher is not None}
    if method == "cascade":
        last = ctx.rounds[-1]
        return {variant: (row(ctx, model, data, budget_x, **info, levels=last["levels"],
                              steps={"train": args.epochs * steps_per_epoch(data, args)},
                              seconds={"prune_and_train": round(prune_s, 1)}), model)}
    out = {}
    if method == "cpli":
        stages = [r for r in ctx.rounds if r.get("method") == "cpli"]
        recon = {"recon_error_plain_mean": float(np.mean([r["recon_error_plain"] for r in stages])),
                 "recon_error_refit_mean": float(np.mean([r["recon_error_refit"] for r in stages]))}
        out["cpli_noft"] = (row(ctx, model, data, budget_x, **info, **recon, epochs=0,
                                seconds={"prune": round(prune_s, 1)}), copy.deepcopy(model))
    ft_s, steps = finetune(model, data, args, teacher)
    name = "cpli_ft" if method == "cpli" else variant
    out[name] = (row(ctx, model, data, budget_x, **info, epochs=args.epochs, steps={"finetune": steps},
                     seconds={"prune": round(prune_s, 1), "finetune": round(ft_s, 1)}), model)
    return out


def steps_per_epoch(data, args) -> int:
    from deploypipe.train import make_loader

    return len(make_loader(data.train, args.batch_size, shuffle=True))


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
                times[name].append(profile_onnx(path, "cpu-batch32", per_layer=False, iterations=iterations).stats.median)
    return {k: {"median_ms": float(np.median(v)), "repeats_ms": v, "torch_vs_onnx_max_abs": parity[k]}
            for k, v in times.items()}


def bench_arch(arch: str, data, args) -> dict:
    shape = (1, *data.input_shape)
    torch.set_num_threads(args.threads)
    dense, dense_acc, dense_s = train_dense(arch, data, args)
    print(f"{arch}: dense {dense_acc:.4f} after {dense_s:.0f}s", flush=True)
    budgets = []
    for budget_x in (float(b) for b in args.budgets.split(",")):
        rows, models = {}, {}
        for variant in args.variants.split(","):
            torch.set_num_threads(args.threads)
            for name, (r, m) in run_variant(variant, dense, data, shape, budget_x, args).items():
                rows[name], models[name] = r, m
                print(f"  {arch} {budget_x:g}x {name:10s} acc {r['accuracy']:.4f} MACs {r['macs'] / 1e6:6.2f}M "
                      f"{sum(r['seconds'].values()):.0f}s", flush=True)
        lat = latency({"dense": dense, **models}, shape, args.repeats, args.iterations)
        for name, r in rows.items():
            r["latency"] = lat[name]
            r["speedup"] = lat["dense"]["median_ms"] / lat[name]["median_ms"]
        budgets.append({"budget_x": budget_x, "variants": rows,
                        "dense": {"accuracy": dense_acc, "latency": lat["dense"]}})
    any_row = next(iter(budgets[0]["variants"].values()), {}) if budgets else {}
    return {"arch": arch, "dense_accuracy": dense_acc, "dense_train_seconds": round(dense_s, 1),
            "dense_macs": any_row.get("dense_macs"), "load_average_end": list(os.getloadavg()),
            "budgets": budgets}


def table(results: list[dict]) -> list[str]:
    """One line per arch, budget and variant: accuracy, MACs and speedup."""
    lines = []
    for arch in results:
        for b in arch["budgets"]:
            for name, r in b["variants"].items():
                lines.append(f"{arch['arch']:9s} {b['budget_x']:g}x {name:10s} acc {r['accuracy']:.4f} "
                             f"MACs {r['macs'] / 1e6:7.2f}M  {r['latency']['median_ms']:7.2f} ms "
                             f"({r['speedup']:.2f}x)")
    return lines


def main() -> int:
    args = parse()
    held, load_start, started = lock_held(), os.getloadavg(), time.perf_counter()
    args.git = git_state(("deploypipe/prune", "deploypipe/train", "tools/bench_seed_methods_2.py"))
    data = load_data(args)
    results: list[dict] = []
    for arch in args.archs.split(","):
        results.append(bench_arch(arch, data, args))
        write(args, document(args, data, results, held, load_start, started))  # partial results survive
    print("\n".join(table(results)))
    print(f"wrote {args.out} after {time.perf_counter() - started:.0f}s")
    return 0


def write(args, doc: dict) -> None:
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")


def document(args, data, results: list[dict], held: bool, load_start, started: float) -> dict:
    from deploypipe.measure.fingerprint import hardware_fingerprint

    return {
        "benchmark": "seed methods II: cpli (no fine-tuning / fine-tuned), cascade (0/1/2 assistants) vs one-shot "
                     "l1 and one-shot l1 + direct KD",
        "command": " ".join(["flock", LOCK, "python", "tools/" + Path(sys.argv[0]).name, *sys.argv[1:]])
        if held else " ".join(["python", "tools/" + Path(sys.argv[0]).name, *sys.argv[1:]]),
        "conditions": {
            "dataset": f"MNIST ({data.source})", "input": list(data.input_shape),
            "subset": {"train": len(data.train), "val": len(data.val), "test": len(data.test)},
            "batch_size": args.batch_size,
            "pretrain": {"epochs": args.pretrain_epochs, "lr": args.pretrain_lr, "warmup_epochs": args.pretrain_warmup,
                         "schedule": "cosine"},
            "after_pruning": {"epochs": args.epochs, "steps_per_epoch": steps_per_epoch(data, args),
                              "finetune_lr": FINETUNE_LR, "schedule": "cosine",
                              "kd": {"alpha": 0.9, "tau": 4.0},
                              "cascade": "trains the same epochs itself (pruning events in the first half)"},
            "cpli": {"samples": args.cpli_samples, "other_params": "defaults (positions 16, lam 1, ridge 1e-2, "
                                                                   "suppress 0.1, steps 32)"},
            "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
            "round_to": ROUND_TO, "importance_for_widths": "l1, uniform allocation",
            "budgets": "MACs reduction, counted on the exported graph",
            "latency": f"ONNX Runtime CPU, cpu-batch32 target (batch 32, 1 thread), median of {args.repeats} "
                       f"interleaved repeats x {args.iterations} iterations",
            "torch_threads_training": args.threads, "smoke": args.smoke,
            "measure_lock_held": held,
            "shared_machine": "2 cores shared with other engineers' jobs (tests, builds): timings carry their load",
            "load_average_start_end": [list(load_start), list(os.getloadavg())],
            "wall_seconds": round(time.perf_counter() - started, 1),
        },
        "machine": hardware_fingerprint().to_dict(), "python": platform.python_version(),
        "torch": torch.__version__, "git": args.git, "complete": len(results) == len(args.archs.split(",")), "results": results,
    }


if __name__ == "__main__":
    sys.exit(main())
