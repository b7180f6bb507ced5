#!/usr/bin/env python3
"""Seed methods at matched budgets: every pruning method of deploypipe against one-shot L1
and Torch-Pruning's group-L2 (MetaPruner, GroupMagnitudeImportance(p=2), uniform), from
one dense model trained to convergence, every pruned model at the same MACs (within 1%),
each with the same number of training epochs after the dense model.

* **Data and model**: ResNet-20 on an MNIST subset (default 4,000 training, 1,000
  validation and 5,000 test images, 28x28), batch 64, one torch thread: what finishes in
  about an hour on this shared 2-core machine. The dense model trains ``--dense-epochs``
  (cosine from 0.1) and its validation curve is recorded to show the plateau.
* **Budget**: ``--macs`` times fewer MACs (2x), no channel rounding (``round_to`` 1). The
  build's uniform allocation lands just under the target, and every cell that allocates
  widths (l1, increg, greg, cpli, fbs with ``static=budget``, cascade's student) lands on
  the same MACs: that is the reference; Group Fisher removes single channels until the
  target and Torch-Pruning's ratio is bisected to within 1% of the reference, and every
  cell records its MACs over the reference and over the target.
* **Training after the dense model**: ``--epochs`` (5) epochs of the training subset for
  every cell. One-shot methods (l1, Torch-Pruning, CPLI) fine-tune all of them; methods
  that prune while training (group_fisher, increg, greg1, greg2) use their default
  ``schedule=fit`` with ``prune_epochs`` = ``--prune-epochs`` (2.5) and fine-tune the steps
  left; FBS trains its gates 1 + 2 epochs, then fine-tunes 2; cascade trains its chain
  for all of them. The paper-faithful variant of Group Fisher (``schedule=paper``: one
  channel every 25 iterations, lr 0.04 x the pre-training rate) prunes as long as that
  takes and then fine-tunes like the fast one; IncReg's and GReg's paper schedules (10^4
  and 10^5 iterations) do not fit in the hour and are recorded as not run, with their length.
* **Errors**: each cell's test error with its binomial standard error over the test
  images, and its paired difference to one-shot L1 of the same seed on the same images
  with its standard error. Every method runs with seeds 0, 1 and 2 (``NAME_seedK``:
  calibration sample, data order, fine-tuning), and ``summary`` gives per method the mean
  error and difference to L1 with their standard errors over the seeds, which include
  the training noise that the test-image errors leave out.
* **Resumable**: the dense model and every finished cell are cached under ``--cache``
  (keyed by the settings); a rerun skips them. The JSON is rewritten after every cell.

    nohup nice -n 19 python tools/bench_seed_methods.py > bench.log 2>&1 &   # about an hour
    python tools/bench_seed_methods.py --smoke                                # about two minutes
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # before numpy/torch load
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import copy
import hashlib
import json
import math
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from _benchlib import git_state, load_mnist_subset

MEASURED = ("deploypipe/prune", "deploypipe/graph/cost.py", "tools/bench_seed_methods.py")  # code the numbers depend on

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parents[1]
PRETRAIN_LR, FINETUNE_LR = 0.1, 0.01
METHODS = ("l1", "tp_group_l2", "group_fisher", "increg", "greg1", "greg2", "cpli", "fbs", "cascade")
CELLS = (*METHODS, "group_fisher_paper", *(f"{m}_seed{k}" for k in (1, 2) for m in METHODS))


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="a tiny run (400 images, 1+2 epochs) to check the script")
    p.add_argument("--arch", default="resnet20")
    p.add_argument("--macs", type=float, default=2.0, help="MACs reduction of every pruned model")
    p.add_argument("--cells", default=",".join(CELLS))
    p.add_argument("--train-limit", type=int, default=4000)
    p.add_argument("--val-limit", type=int, default=1000)
    p.add_argument("--test-limit", type=int, default=5000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--dense-epochs", type=int, default=15)
    p.add_argument("--epochs", type=int, default=5, help="training epochs after the dense model, every cell")
    p.add_argument("--prune-epochs", type=float, default=2.5, help="schedule=fit's pruning phase")
    p.add_argument("--cache", default="/tmp/deploypipe-bench-seed-methods")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "seed_methods.json"))
    args = p.parse_args()
    if args.smoke:
        args.train_limit, args.val_limit, args.test_limit = 400, 100, 300
        args.dense_epochs, args.epochs, args.prune_epochs = 1, 2, 1.0
        args.out = str(Path(args.out).with_name("seed_methods_smoke.json"))
    return args


def settings(args) -> dict:
    keys = ("arch", "macs", "train_limit", "val_limit", "test_limit", "batch_size", "dense_epochs", "epochs",
            "prune_epochs")
    return {k: getattr(args, k) for k in keys}


def cache_dir(args) -> Path:
    tag = hashlib.sha256(json.dumps(settings(args), sort_keys=True).encode()).hexdigest()[:12]
    path = Path(args.cache) / tag
    path.mkdir(parents=True, exist_ok=True)
    return path


# -- the dense model ----------------------------------------------------------------------------
def dense_model(args, data, cache: Path) -> tuple[torch.nn.Module, dict]:
    """The dense model, trained once to convergence (cosine from 0.1) and cached."""
    from deploypipe.models import create_model
    from deploypipe.train import TrainConfig, fit

    torch.manual_seed(0)
    model = create_model(args.arch, num_classes=data.num_classes, in_channels=data.in_channels,
                         input_size=data.image_size)
    path, meta_path = cache / "dense.pt", cache / "dense.json"
    if path.exists() and meta_path.exists():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model, json.loads(meta_path.read_text())
    start = time.perf_counter()
    result = fit(model, data, TrainConfig(epochs=args.dense_epochs, batch_size=args.batch_size, lr=PRETRAIN_LR,
                                          progress=False))
    meta = {"epochs": args.dense_epochs, "lr": PRETRAIN_LR, "schedule": "cosine", "git_at_start": git_state(MEASURED),
            "val_accuracy_per_epoch": [r.val_acc for r in result.history],
            "train_loss_per_epoch": [round(r.train_loss, 5) for r in result.history],
            "seconds": round(time.perf_counter() - start, 1)}
    torch.save(model.state_dict(), path)
    meta_path.write_text(json.dumps(meta))
    return model, meta


# -- the cells ------------------------------------------------------------------------------------
def cell_spec(name: str, args) -> tuple[str, dict, int]:
    """(method, params, seed) of a cell, ``NAME`` or ``NAME_seedK``; ``tp_group_l2`` is
    Torch-Pruning, outside deploypipe."""
    base, _, seed = name.partition("_seed")
    fit = {"prune_epochs": args.prune_epochs}
    specs = {
        "l1": ("oneshot", {}), "tp_group_l2": ("torch_pruning", {}),
        "group_fisher": ("group_fisher", fit),
        "group_fisher_paper": ("group_fisher", {"schedule": "paper", "lr_scale": 0.4}),
        "increg": ("increg", fit), "greg1": ("greg1", fit), "greg2": ("greg2", fit),
        "cpli": ("cpli", {}), "fbs": ("fbs", {"static": "budget"}), "cascade": ("cascade", {}),
    }
    if base not in specs or (seed and not seed.isdigit()):
        raise SystemExit(f"unknown cell {name!r}; choose from {', '.join(CELLS)} (or NAME_seedK)")
    return (*specs[base], int(seed or 0))


def context(model, data, args, seed: int, epochs: int):
    from deploypipe.prune.budget import Budget
    from deploypipe.prune.methods import PruneContext, PruneRequest
    from deploypipe.prune.torch_groups import TorchPruner
    from deploypipe.train import TrainConfig

    request = PruneRequest(budget=Budget("macs", args.macs, "reduction"), importance="l1", round_to=1, seed=seed)
    config = TrainConfig(epochs=max(1, epochs), batch_size=args.batch_size, lr=FINETUNE_LR, seed=seed,
                         progress=False)
    return PruneContext(TorchPruner(model, (1, *data.input_shape)), request, data=data, train_config=config)


def prune_steps(ctx, method: str, params: dict, per_epoch: int, args) -> int:
    """Optimizer steps the method trained for while pruning (0 for one-shot methods)."""
    if method == "fbs":
        return 3 * per_epoch
    if method == "cascade":
        return args.epochs * per_epoch
    return int(max((r.get("iteration", 0) for r in ctx.rounds), default=0))


def finetune(model, data, args, seed: int, steps: int) -> int:
    """Fine-tune ``steps`` steps (cosine from 0.01, spread over whole epochs); returns them."""
    from deploypipe.train import TrainConfig, fit

    if steps <= 0:
        return 0
    per_epoch = math.ceil(len(data.train) / args.batch_size)
    epochs = max(1, math.ceil(steps / per_epoch))
    config = TrainConfig(epochs=epochs, batch_size=args.batch_size, lr=FINETUNE_LR, seed=seed, progress=False,
                         max_steps_per_epoch=math.ceil(steps / epochs))
    return fit(model, data, config).steps


def run_deploypipe(name: str, dense, data, args) -> tuple[dict, torch.nn.Module]:
    """One deploypipe cell: prune a copy of the dense model, fine-tune the steps its
    pruning left of the budget, and record both phases."""
    from deploypipe.prune.methods import create_method

    method, params, seed = cell_spec(name, args)
    per_epoch = math.ceil(len(data.train) / args.batch_size)
    model = copy.deepcopy(dense)
    ctx = context(model, data, args, seed, args.epochs)
    start = time.perf_counter()
    create_method(method, params).run(ctx)
    pruning = time.perf_counter() - start
    used = prune_steps(ctx, method, params, per_epoch, args)
    total = args.epochs * per_epoch
    left = total - used if used < total else total - math.ceil(args.prune_epochs * per_epoch)
    start = time.perf_counter()
    tuned = 0 if method == "cascade" else finetune(model, data, args, seed, left)
    record = {"method": method, "params": params, "seed": seed, "losses": dict(ctx.losses),
              "steps": {"prune": used, "finetune": tuned, "total": used + tuned, "budget": total},
              "seconds": {"prune": round(pruning, 1), "finetune": round(time.perf_counter() - start, 1)},
              "rounds": len(ctx.rounds), "notes": notes(ctx, method)}
    return record, model


def notes(ctx, method: str) -> dict:
    """What a method's last round says that the comparison needs (forced ends, levels, ...)."""
    if not ctx.rounds:
        return {}
    last = ctx.rounds[-1]
    keep = ("forced", "phase", "levels", "distinct", "nested", "dynamic_macs", "gated_accuracy", "static_macs",
            "normalize", "removal_events", "iteration")
    return {k: last[k] for k in keep if k in last}


def reference_macs(dense, data, args) -> float:
    """MACs of the build's allocation at the budget (uniform, by L1): what every deploypipe
    cell that allocates widths lands on, and the reference all cells are matched to."""
    from deploypipe.prune.methods.increg import channel_l1

    ctx = context(copy.deepcopy(dense), data, args, 0, 1)
    return float(ctx.dense_cost.macs(ctx.keep_for(ctx.request.budget, channel_l1(ctx.pruner))))


def tp_bisect(dense, shape, reference: float, global_pruning: bool):
    """(ratio, model, MACs) of Torch-Pruning's group-L2 MetaPruner at the largest MACs within
    1% above ``reference`` (bisection on its pruning ratio)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_vs_torch_pruning import macs_of, tp_once

    lo, hi, best = 0.0, 0.95, None
    for _ in range(16):
        mid = (lo + hi) / 2
        candidate, _ = tp_once(dense, shape, mid, global_pruning)
        macs = macs_of(candidate, shape)
        if macs <= reference * 1.01:
            best, hi = (mid, candidate, macs), mid
        else:
            lo = mid
    return best


def run_torch_pruning(dense, data, args, reference: float, seed: int) -> tuple[dict, torch.nn.Module]:
    """Torch-Pruning's group-L2, uniform (global_pruning=False) where a ratio lands within 1%
    of the reference MACs, else global (its uniform widths move in steps of several %),
    fine-tuned like one-shot L1."""
    import torch_pruning as tp

    shape = (1, *data.input_shape)
    start = time.perf_counter()
    ratio, model, macs = tp_bisect(dense, shape, reference, False)
    mode = "uniform (global_pruning=False)"
    if abs(macs / reference - 1) > 0.01:
        uniform_gap = macs / reference
        ratio, model, macs = tp_bisect(dense, shape, reference, True)
        mode = f"global (global_pruning=True): uniform's nearest ratio gave {uniform_gap:.4f} x the reference MACs"
    pruning = time.perf_counter() - start
    per_epoch = math.ceil(len(data.train) / args.batch_size)
    start = time.perf_counter()
    tuned = finetune(model, data, args, seed, args.epochs * per_epoch)
    params = {"importance": "GroupMagnitudeImportance(p=2)", "pruner": f"MetaPruner, {mode}",
              "pruning_ratio": ratio, "version": tp.__version__}
    return {"method": "torch_pruning", "params": params, "seed": seed,
            "steps": {"prune": 0, "finetune": tuned, "total": tuned, "budget": args.epochs * per_epoch},
            "seconds": {"prune": round(pruning, 1), "finetune": round(time.perf_counter() - start, 1)}}, model


# -- measuring -------------------------------------------------------------------------------------
def measure(model, data, dense_macs: float, target: float, reference: float) -> dict:
    """Test error with its standard error, per-image correctness, MACs and parameters."""
    from deploypipe.graph import analyse
    from deploypipe.prune.torch_groups import export_model
    from deploypipe.train import predict_logits

    logits, labels = predict_logits(model, data.test)
    wrong = (logits.argmax(dim=1) != labels).numpy().astype(np.int8)
    error = float(wrong.mean())
    analysis = analyse(export_model(model, (1, *data.input_shape)))
    return {"error": error, "error_se": math.sqrt(error * (1 - error) / len(wrong)), "accuracy": 1 - error,
            "macs": float(analysis.macs), "macs_over_target": float(analysis.macs) / target,
            "macs_over_reference": float(analysis.macs) / reference,
            "macs_reduction": dense_macs / float(analysis.macs), "params": float(analysis.params),
            "wrong": "".join(map(str, wrong.tolist()))}


def paired(row: dict, base: dict) -> dict:
    """Error difference to ``base`` on the same test images, with its standard error."""
    d = _wrong(row) - _wrong(base)
    return {"difference": float(d.mean()), "se": float(d.std(ddof=1) / math.sqrt(len(d)))}


def run_cell(name: str, dense, data, args, cache: Path, dense_macs: float, reference: float) -> dict:
    """A cell's record, from the cache if it finished before, else run and cached."""
    path = cache / f"{name}.json"
    if path.exists():
        return json.loads(path.read_text())
    start = time.perf_counter()
    if name.startswith("tp_group_l2"):
        record, model = run_torch_pruning(dense, data, args, reference, cell_spec(name, args)[2])
    else:
        record, model = run_deploypipe(name, dense, data, args)
    record.update(measure(model, data, dense_macs, dense_macs / args.macs, reference))
    record["wall_seconds"] = round(time.perf_counter() - start, 1)
    path.write_text(json.dumps(record))
    return record


# -- the document -----------------------------------------------------------------------------------
def not_run(args) -> dict:
    """The paper schedules that do not fit: what they would take on this data."""
    from deploypipe.prune.methods import create_method

    per_epoch = math.ceil(args.train_limit / args.batch_size)
    out = {}
    for method in ("increg", "greg1", "greg2"):
        steps, detail = create_method(method, {"schedule": "paper"}).paper_steps()
        out[f"{method}_paper"] = {"steps": steps, "epochs_of_this_data": round(steps / per_epoch, 1),
                                  "detail": detail, "why": "does not fit the benchmark's hour on 2 cores"}
    return out


def _wrong(row: dict) -> np.ndarray:
    return (np.frombuffer(row["wrong"].encode(), dtype=np.uint8) - ord("0")).astype(np.float64)


def summarise(rows: dict) -> dict:
    """Per method over its seeds: mean test error with its standard error over seeds; the
    mean paired difference to one-shot L1 of the same seed, with its standard error over
    seeds, over the test images (of the per-image difference averaged over seeds), and
    both combined (the root of the sum of squares, conservative)."""
    out = {}
    for name in dict.fromkeys(n.partition("_seed")[0] for n in rows):
        runs = {n: r for n, r in rows.items() if n.partition("_seed")[0] == name}
        errors = np.array([r["error"] for r in runs.values()])
        pairs = [(r, rows["l1" + n[len(name):]]) for n, r in runs.items() if "l1" + n[len(name):] in rows]
        diffs = np.array([r["error"] - base["error"] for r, base in pairs])
        per_image = np.mean([_wrong(r) - _wrong(base) for r, base in pairs], axis=0) if pairs else np.zeros(1)
        se_seeds = float(diffs.std(ddof=1) / math.sqrt(len(diffs))) if len(diffs) > 1 else 0.0
        se_images = float(per_image.std(ddof=1) / math.sqrt(len(per_image))) if pairs else 0.0
        out[name] = {"seeds": len(runs), "error_mean": float(errors.mean()),
                     "error_se_over_seeds": float(errors.std(ddof=1) / math.sqrt(len(errors)))
                     if len(runs) > 1 else None,
                     "vs_l1_mean": float(diffs.mean()) if pairs else None,
                     "vs_l1_se_over_seeds": se_seeds if len(diffs) > 1 else None,
                     "vs_l1_se_test_images": se_images if pairs else None,
                     "vs_l1_se_combined": math.hypot(se_seeds, se_images) if pairs else None,
                     "macs_over_reference": float(np.mean([r["macs_over_reference"] for r in runs.values()]))}
    return out


def document(args, data, dense_meta: dict, rows: dict, reference: float, started: float, load_start) -> dict:
    """The JSON: settings, git commit, dense model, matched MACs, every cell with its
    errors and paired differences, and what was not run."""
    from deploypipe.measure.fingerprint import hardware_fingerprint

    for name, row in rows.items():
        suffix = name[name.index("_seed"):] if "_seed" in name else ""
        for base in ("l1", "tp_group_l2"):
            if base + suffix in rows:  # the same seed's baseline, on the same test images
                row[f"vs_{base}"] = paired(row, rows[base + suffix])
    within = {k: abs(r["macs_over_reference"] - 1) <= 0.01 for k, r in rows.items()}
    return {
        "benchmark": "seed methods at matched MACs vs one-shot L1 and Torch-Pruning group-L2",
        "command": " ".join(["python", "tools/" + Path(sys.argv[0]).name, *sys.argv[1:]]),
        "git": {**git_state(MEASURED), "at_start": dense_meta.get("git_at_start")}, "settings": settings(args),
        "conditions": {"dataset": f"MNIST subset ({data.source})", "split_sizes": list(data.sizes()),
                       "input_shape": list(data.input_shape), "round_to": 1, "torch_threads": 1,
                       "finetune": {"lr": FINETUNE_LR, "schedule": "cosine"},
                       "error_se": "per cell: binomial over the test images; per method (summary): "
                                   "over its seeds (0, 1, 2: calibration, data order and fine-tuning)",
                       "shared_machine": "2 cores shared with other engineers' jobs, run under nice -n 19",
                       "load_average_start_end": [list(load_start), list(os.getloadavg())],
                       "wall_seconds": round(time.perf_counter() - started, 1),
                       "compute_seconds": round(dense_meta["seconds"] + sum(r["wall_seconds"] for r in rows.values()),
                                                1),
                       "note": "wall_seconds is this invocation's; cells cached by earlier ones count in "
                               "compute_seconds (dense training plus every cell's own wall time)"},
        "dense": dense_meta,
        "matched_macs": {"target": dense_meta["macs"] / args.macs, "reference": reference,
                         "rule": "every cell within 1% of the reference: the MACs of the build's uniform "
                                 "allocation at the target (l1, increg, greg, cpli, fbs and cascade land on it)",
                         "all_within_1pct": all(within.values()), "within_1pct": within},
        "summary": summarise(rows),
        "cells": {k: {kk: vv for kk, vv in r.items() if kk != "wrong"} for k, r in rows.items()},
        "cells_pending": [c for c in args.cells.split(",") if c not in rows],
        "paper_schedules_not_run": not_run(args),
        "machine": hardware_fingerprint().to_dict(), "python": platform.python_version(), "torch": torch.__version__,
    }


def main() -> int:
    """Dense model, then every cell in order, the JSON rewritten after each."""
    args = parse()
    torch.set_num_threads(1)
    from deploypipe.train import evaluate

    started, load_start = time.perf_counter(), os.getloadavg()
    data = load_mnist_subset(args.train_limit, args.val_limit, args.test_limit)
    cache = cache_dir(args)
    dense, dense_meta = dense_model(args, data, cache)
    dense_row = measure(dense, data, 1.0, 1.0, 1.0)
    reference = reference_macs(dense, data, args)
    dense_meta.update({k: dense_row[k] for k in ("error", "error_se", "macs", "params")})
    dense_meta["test_accuracy"] = evaluate(dense, data.test)
    print(f"dense {args.arch}: error {dense_row['error']:.4f} ({dense_row['macs'] / 1e6:.2f}M MACs)", flush=True)
    rows: dict[str, dict] = {}
    for name in args.cells.split(","):
        rows[name] = run_cell(name, dense, data, args, cache, dense_row["macs"], reference)
        r = rows[name]
        print(f"  {name:20s} error {r['error']:.4f} +- {r['error_se']:.4f}  MACs/ref {r['macs_over_reference']:.4f}"
              f"  steps {r['steps']['prune']}+{r['steps']['finetune']}  {r['wall_seconds']:.0f}s", flush=True)
        doc = document(args, data, dense_meta, rows, reference, started, load_start)
        Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out} after {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
