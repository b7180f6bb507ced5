#!/usr/bin/env python3
"""deploypipe against Torch-Pruning 1.6.1 on CIFAR-10, from the same dense checkpoint.

For each architecture and seed, one dense model is trained on CIFAR-10 by ``deploypipe train``
(the user's command; 32x32, padded random crop and mirror, SGD with a cosine schedule). From
that checkpoint, for each MACs budget (2x, 3x fewer):

  * ``tp_l2_uniform`` / ``tp_l2_global``: Torch-Pruning's MetaPruner with
    GroupMagnitudeImportance(p=2), its ratio bisected until the MACs meet the budget;
  * ``tp_taylor_global``: the same with GroupTaylorImportance (gradients of one
    calibration batch of 256 training images);
  * ``tp_hessian_global``: the same with GroupHessianImportance (Optimal Brain Damage: squared
    per-sample gradients of 64 of those images);
  * ``dp_default``: ``deploypipe build --macs-budget Nx --method oneshot --importance l1
    --allocation uniform``, the classic default (the build's default until CPLI per MAC below
    measured better), rounded to the target's 8 channels;
  * ``dp_l2_global`` / ``dp_taylor_global``: ``--importance l2|taylor --allocation global``;
  * ``dp_l2_global_r1`` / ``dp_cpli_r1``: the same without rounding widths (``--round-to 1``),
    which separates what rounding costs in accuracy (and buys in speed) from the rest;
  * ``dp_cpli_global_r1``: CPLI's selection and refit on the widths of ``dp_l2_global_r1``
    (``--method cpli --importance l2 --allocation global --round-to 1``): the allocation that
    put Torch-Pruning's global rows ahead of its uniform ones, with CPLI choosing the channels;
  * ``dp_cpli``: ``--method cpli`` (loss-guided channel selection with a least-squares refit
    of the consumers, from METHODS.md), deploypipe's best method when fine-tuning is short;
  * ``dp_taylor_percost_r1`` / ``dp_fisher_percost_r1`` / ``dp_fisher_percost``: ``--importance
    taylor|fisher --allocation per-cost`` (channels ranked by estimated loss per MAC their removal
    saves), unrounded or rounded to the target's 8;
  * ``dp_cpli_percost`` / ``dp_cpli_percost_r1``: CPLI's selection and refit on the widths of
    Fisher per MAC (``--method cpli --importance fisher --allocation per-cost``), x8 or unrounded;
    x8, deploypipe's best rounded variant measured on the CPU (resnet20, resnet56) and what
    ``build`` does by default with data and a MACs budget;
  * ``dp_latency``: ``--method cpli --latency-ratio R`` on cpu-batch32 with R the latency
    Torch-Pruning's L2 global model measured against dense (deploypipe at equal measured latency).

deploypipe prunes through its CLI (``build --epochs 0``, the pruned checkpoint reloaded), and
every pruned model, whichever tool made it, is then fine-tuned by the same loop with the same
data, epochs and schedule, evaluated on the full 10,000-image test set, exported to ONNX and
timed by one harness (ONNX Runtime, cpu-batch32: batch 32, one thread; median of interleaved
repeats). Errors carry the binomial standard error over the test images.

Every finished cell is cached under ``bench_cache/cifar/`` (git-ignored): a killed run resumes
where it stopped. The results go to ``benchmarks/results/cifar10.json``.

    python tools/bench_cifar.py                     # resnet20, 2x and 3x, seed 0
    python tools/bench_cifar.py --archs resnet20,resnet56 --seeds 0,1
    python tools/bench_cifar.py --smoke             # minutes: tiny data, to check it works
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parents[1]
ARCHIVE = ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
CACHE = ROOT / "bench_cache" / "cifar"
VARIANTS = ("tp_l2_uniform", "tp_l2_global", "tp_taylor_global", "tp_hessian_global", "dp_default", "dp_l2_global",
            "dp_taylor_global", "dp_l2_global_r1", "dp_cpli", "dp_cpli_r1", "dp_cpli_global_r1",
            "dp_taylor_percost_r1", "dp_fisher_percost_r1", "dp_fisher_percost", "dp_cpli_percost", "dp_cpli_percost_r1",
            "dp_latency")
KD_TAG = "kd"  # ends the fine-tuning tag of rows fine-tuned with distillation from the dense model


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archive", default=str(ARCHIVE), help="CIFAR-10 (any layout `cifar10:` reads)")
    p.add_argument("--archs", default="resnet20")
    p.add_argument("--seeds", default="0")
    p.add_argument("--budgets", default="2,3", help="MACs reductions (2 = 2x fewer MACs)")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--dense-epochs", type=int, default=10)
    p.add_argument("--finetune-epochs", type=int, default=2)
    p.add_argument("--finetune-images", type=int, default=20000, help="training images fine-tuning sees")
    p.add_argument("--finetune-lr", type=float, default=0.05)
    p.add_argument("--finetune-distill", action="store_true",
                   help="fine-tune every tool's model with knowledge distillation from the dense model (what "
                        "`deploypipe build --distill` does; tau 4, alpha 0.9)")
    p.add_argument("--repeats", type=int, default=5, help="interleaved latency repeats")
    p.add_argument("--threads", type=int, default=1, help="torch threads (the machine has 2 cores)")
    p.add_argument("--device", default="cpu", help="where dense training and fine-tuning run (cuda: the data "
                   "held on the GPU, channels-last, bfloat16 autocast); pruning and latency stay on the CPU")
    p.add_argument("--dense-lr", type=float, default=0.1)
    p.add_argument("--deadline", type=float, help="minutes after which no new cell starts (the JSON keeps "
                   "what finished; a rerun resumes)")
    p.add_argument("--smoke", action="store_true", help="tiny data and one epoch: checks the harness, not the tools")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cifar10.json"))
    p.add_argument("--table", action="store_true", help="print the README table of --out and stop")
    args = p.parse_args(argv)
    unknown = sorted(set(args.variants.split(",")) - set(VARIANTS))
    if unknown:
        p.error(f"unknown variants {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    return args


# -- data and dense models ----------------------------------------------------------------
def load_data(args):
    from deploypipe.data import load_dataset

    return load_dataset(f"cifar10:{args.archive}", seed=0, limit=2000 if args.smoke else None)


def subset(ds, n: int, seed: int):
    """``n`` training images drawn at random (seeded): a fair sample of every class."""
    from torch.utils.data import TensorDataset

    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n]
    return TensorDataset(*(t[idx] for t in ds.tensors))


def dense_checkpoint(args, arch: str, seed: int) -> Path:
    """The dense model, trained by the user's command (once; cached)."""
    path = CACHE / f"{arch}_s{seed}{dense_tag(args)}{'_smoke' if args.smoke else ''}.pt"
    if path.exists():
        return path
    cmd = [sys.executable, "-m", "deploypipe", "train", "--arch", arch, "--dataset", f"cifar10:{args.archive}",
           "--epochs", str(1 if args.smoke else args.dense_epochs), "--augment", "crop-flip", "--seed", str(seed),
           "--lr", str(args.dense_lr), "-o", str(path)] + (["--limit", "2000"] if args.smoke else []) + \
        (["--device", args.device, "--amp"] if args.device != "cpu" else [])
    print("training:", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT, env=_threads_env(args))
    return path


def _threads_env(args) -> dict:
    """The CLI runs with the harness's thread count (two runs can share the two cores)."""
    return {**os.environ, "OMP_NUM_THREADS": str(args.threads)}


def load(path: Path) -> torch.nn.Module:
    from deploypipe.checkpoint import load_model

    return load_model(path).model


def training_seconds(path: Path) -> dict:
    """How long the dense model's training took, from the history its checkpoint keeps."""
    meta = torch.load(path, map_location="cpu", weights_only=True).get("metadata") or {}
    epochs = [round(h["seconds"], 1) for h in meta.get("history", []) if "seconds" in h]
    return {"train_seconds": round(meta["train_seconds"], 1), "epoch_seconds": epochs} if "train_seconds" in meta else {}


# -- the two tools --------------------------------------------------------------------------
def macs_of(model: torch.nn.Module, shape) -> float:
    from deploypipe.graph import analyse
    from deploypipe.prune.torch_groups import export_model

    return float(analyse(export_model(model, shape)).macs)


HESSIAN_SAMPLES = 64  # per-sample backward passes for Group-Hessian (OBD) scores


def tp_importance(candidate, criterion: str, batch):
    """Torch-Pruning's importance as its README writes it: gradients of one calibration batch
    for Taylor, per-sample squared gradients accumulated for Group-Hessian."""
    import torch_pruning as tp

    if criterion == "l2":
        return tp.importance.GroupMagnitudeImportance(p=2)
    x, y = batch
    candidate.eval()
    candidate.zero_grad()
    if criterion == "taylor":
        torch.nn.functional.cross_entropy(candidate(x), y).backward()
        return tp.importance.GroupTaylorImportance()
    importance = tp.importance.GroupHessianImportance()
    importance.zero_grad()
    for loss in torch.nn.functional.cross_entropy(candidate(x[:HESSIAN_SAMPLES]), y[:HESSIAN_SAMPLES],
                                                  reduction="none"):
        candidate.zero_grad()
        loss.backward(retain_graph=True)
        importance.accumulate_grad(candidate)
    return importance


def tp_once(model, shape, ratio: float, global_pruning: bool, criterion: str = "l2", batch=None):
    import torch_pruning as tp

    candidate = copy.deepcopy(model)
    fc = [m for m in candidate.modules() if isinstance(m, torch.nn.Linear)][-1]
    importance = tp_importance(candidate, criterion, batch)
    pruner = tp.pruner.MetaPruner(candidate, torch.randn(*shape), importance=importance, pruning_ratio=ratio,
                                  global_pruning=global_pruning, ignored_layers=[fc])
    pruner.step()
    candidate.zero_grad(set_to_none=True)
    return candidate


def tp_prune(model, shape, target_macs: float, global_pruning: bool, criterion: str = "l2", batch=None):
    """Torch-Pruning to ``target_macs`` as counted on the exported graph (deploypipe's counter,
    so both tools meet the same budget): MetaPruner's ratio bisected, the smallest ratio
    whose model meets the budget kept."""
    lo, hi, best = 0.0, 0.95, None
    for _ in range(12):
        mid = (lo + hi) / 2
        if macs_of(tp_once(model, shape, mid, global_pruning, criterion, batch), shape) <= target_macs:
            best, hi = mid, mid
        else:
            lo = mid
    return None if best is None else tp_once(model, shape, best, global_pruning, criterion, batch)


def dp_build(args, dense_path: Path, flags: list[str], out: Path) -> torch.nn.Module:
    """deploypipe's CLI on the dense checkpoint, no fine-tuning (the harness fine-tunes every
    tool's model alike); the pruned checkpoint it wrote, reloaded."""
    cmd = [sys.executable, "-m", "deploypipe", "build", str(dense_path), "--dataset", f"cifar10:{args.archive}",
           "--target", "cpu-batch32", "--epochs", "0", "-o", str(out), *flags]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=_threads_env(args))
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-500:]}")
    return load(out / "pruned.pt")


# -- fine-tuning, accuracy, latency ---------------------------------------------------------
def finetune(model, data, args, seed: int, teacher=None) -> float:
    """The same fine-tuning for every tool's model; a ``teacher`` (the dense model, with
    ``--finetune-distill``) distils into it (deploypipe's default KD: tau 4, alpha 0.9)."""
    from deploypipe.train import TrainConfig, fit

    images = 500 if args.smoke else args.finetune_images
    ft = dataclasses.replace(data, train=subset(data.train, images, seed))
    start = time.perf_counter()
    from deploypipe.train.device import device_options

    where = device_options(args.device, True) if args.device != "cpu" else {}
    fit(model, ft, TrainConfig(epochs=1 if args.smoke else args.finetune_epochs, batch_size=128,
                               lr=args.finetune_lr, schedule="cosine", augment="crop-flip", seed=seed,
                               progress=False, **where), teacher=teacher)
    return time.perf_counter() - start


def checkpoint_sha(path: Path) -> str:
    """The dense checkpoint's content (12 hex digits of SHA-256): rows and cells of one seed
    retrained later are another model, never merged with the first (training on the CPU did
    not repeat bit for bit across sessions: resnet20 seed 0 reached 18.64% and later 18.46%)."""
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def dense_tag(args) -> str:
    """The dense recipe in cache names, when it is not the default (10 epochs at lr 0.1)."""
    return "" if (args.dense_epochs, args.dense_lr) == (10, 0.1) else f"_e{args.dense_epochs}lr{args.dense_lr:g}"


def finetune_tag(args) -> str:
    """The fine-tuning a cell was made with. ``r``: the images drawn at random; cells before it
    (``ft2x20000@0.05``) took the first 20,000 of a class-ordered split, five classes only."""
    kd = KD_TAG if args.finetune_distill else ""
    return f"ft{args.finetune_epochs}x{args.finetune_images}r@{args.finetune_lr:g}{kd}"


def error_of(model, data) -> dict:
    from deploypipe.train import evaluate

    n = len(data.test)
    err = 1.0 - float(evaluate(model, data.test))
    return {"error": err, "error_se": math.sqrt(max(err * (1 - err), 1e-12) / n), "test_images": n}


def latency(models: dict[str, torch.nn.Module], shape, repeats: int) -> dict[str, float]:
    """ORT on cpu-batch32, every model once per repeat (interleaved: drift hits all alike)."""
    from _benchlib import interleaved_latency

    lat = interleaved_latency(models, shape, {"batch32": ("cpu-batch32", 25)}, repeats)
    return {k: v["batch32"] for k, v in lat.items()}


# -- cells ----------------------------------------------------------------------------------
class Cells:
    """Finished results by key, kept on disk after each one (a killed run resumes). Runs of
    other seeds may share the file: each write re-reads it under a lock."""

    def __init__(self, path: Path):
        from filelock import FileLock

        self.path, self.lock = path, FileLock(str(path) + ".lock")

    def _read(self) -> dict:
        return json.loads(self.path.read_text()) if self.path.exists() else {}

    def get(self, key: str):
        with self.lock:
            return self._read().get(key)

    def put(self, key: str, value) -> None:
        with self.lock:
            data = {**self._read(), key: value}
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(data, indent=1))
            tmp.replace(self.path)


def prune_variant(name: str, args, dense, dense_path: Path, shape, target_macs: float, bx: float,
                  calib, latency_ratio: float | None, workdir: Path):
    if name == "tp_l2_uniform":
        return tp_prune(dense, shape, target_macs, False)
    if name == "tp_l2_global":
        return tp_prune(dense, shape, target_macs, True)
    if name == "tp_taylor_global":
        return tp_prune(dense, shape, target_macs, True, "taylor", calib)
    if name == "tp_hessian_global":
        return tp_prune(dense, shape, target_macs, True, "hessian", calib)
    return dp_build(args, dense_path, dp_flags(name, bx, latency_ratio), workdir / name)


def dp_flags(name: str, bx: float, latency_ratio: float | None = None) -> list[str]:
    """The ``deploypipe build`` options of deploypipe variant ``name`` at ``bx``x fewer MACs
    (a ``_r1`` variant is its base without rounding: ``--round-to 1``)."""
    if name == "dp_latency":
        return [f"--latency-ratio={latency_ratio or 0:.4f}", "--method", "cpli"]
    base = name.removesuffix("_r1")
    cpli, l2_global = ["--method", "cpli"], ["--importance", "l2", "--allocation", "global"]
    fisher_per_mac = ["--importance", "fisher", "--allocation", "per-cost"]
    # the classic defaults spelled out: these cells measure L1 uniform whatever the build's defaults become
    options = {"dp_default": ["--method", "oneshot", "--importance", "l1", "--allocation", "uniform"],
               "dp_l2_global": l2_global,
               "dp_taylor_global": ["--importance", "taylor", "--allocation", "global"],
               "dp_cpli": cpli, "dp_cpli_global": cpli + l2_global,
               "dp_taylor_percost": ["--importance", "taylor", "--allocation", "per-cost"],
               "dp_fisher_percost": fisher_per_mac, "dp_cpli_percost": cpli + fisher_per_mac}[base]
    return [f"--macs-budget={bx:g}x", *options, *(["--round-to", "1"] if base != name else [])]


def run_budget(args, cells: Cells, arch: str, seed: int, bx: float, data, dense_path: Path) -> dict:
    """Every variant of one (arch, seed, budget): pruned, fine-tuned, evaluated, timed."""
    shape = (1, *data.input_shape)
    dense = load(dense_path)
    dense_macs = macs_of(dense, shape)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(data.train), generator=g)[:256]
    calib = (data.train.tensors[0][idx], data.train.tensors[1][idx])
    models, rows = {}, {}
    latency_ratio = None
    sha = checkpoint_sha(dense_path)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.variants.split(","):
            key = (f"{arch}{dense_tag(args)}/s{seed}/{bx:g}x/{name}/{finetune_tag(args)}{'/smoke' if args.smoke else ''}"
                   f"/{sha}")
            if name == "dp_latency":
                tp_row = rows.get("tp_l2_global") or {}
                latency_ratio = tp_row.get("latency_ratio")
                if latency_ratio is None or latency_ratio >= 1:
                    rows[name] = {"error_message": f"torch-pruning's model is not faster than dense "
                                                   f"({latency_ratio}): no equal-latency budget to meet"}
                    continue
            cached = cells.get(key)
            if cached is None and args.deadline and time.time() > args.deadline:
                rows[name] = {"error_message": "not run: past --deadline (a rerun resumes here)"}
                continue
            torch.manual_seed(seed)
            start = time.perf_counter()
            try:
                model = prune_variant(name, args, dense, dense_path, shape, dense_macs / bx, bx, calib,
                                      latency_ratio, Path(tmp))
            except Exception as exc:  # noqa: BLE001  (a tool that fails a cell is a result)
                rows[name] = {"error_message": str(exc)[-400:]}
                continue
            if model is None:
                rows[name] = {"error_message": "the budget could not be met"}
                continue
            if cached is None:
                prune_s = time.perf_counter() - start
                before = error_of(model, data)["error"]
                ft_s = finetune(model, data, args, seed, teacher=dense if args.finetune_distill else None)
                cached = {**error_of(model, data), "error_before_finetune": before, "macs": macs_of(model, shape),
                          "params": sum(p.numel() for p in model.parameters()), "prune_seconds": round(prune_s, 1),
                          "finetune_seconds": round(ft_s, 1)}
                torch.save(model.state_dict(), CACHE / (key.replace("/", "_") + ".pt"))
            else:  # re-pruned (deterministic) only to time it; the fine-tuned weights do not change latency
                pass
            rows[name], models[name] = dict(cached), model
            if name == "tp_l2_global":  # the latency the equal-latency variant aims at
                lat = latency({"dense": dense, name: model}, shape, args.repeats)
                rows[name]["latency_ratio"] = lat[name] / lat["dense"]
            cells.put(key, {k: v for k, v in rows[name].items() if k != "latency_ratio"})
            print(f"  {arch} s{seed} {bx:g}x {name:18s} error {rows[name]['error']:.4f} "
                  f"macs {dense_macs / rows[name]['macs']:.2f}x fewer", flush=True)
    lat = latency({"dense": dense, **models}, shape, args.repeats)
    commit = args.git
    for name in models:
        rows[name]["git"] = commit  # rows of one (arch, seed, budget) merge across runs: each keeps its own
        rows[name]["latency_ms"] = lat[name]
        rows[name]["speedup"] = lat["dense"] / lat[name]
        rows[name]["dense_latency_ms"] = lat["dense"]  # its own run's reference (runs merge per variant)
        rows[name]["macs_reduction"] = dense_macs / rows[name]["macs"]
    dense_row = {**error_of(dense, data), "macs": dense_macs, "params": sum(p.numel() for p in dense.parameters()),
                 "latency_ms": lat["dense"], "checkpoint_sha": sha, **training_seconds(dense_path)}
    return {"arch": arch, "seed": seed, "budget_x": bx, "dense": dense_row, "variants": rows,
            "target_latency_ratio": latency_ratio, "load_average": list(os.getloadavg())}


def write(args, results: list, started: float) -> None:
    from deploypipe.measure.fingerprint import hardware_fingerprint

    doc = {"benchmark": "deploypipe vs torch-pruning 1.6.1 on CIFAR-10 (same dense checkpoint, same fine-tuning)",
           "command": " ".join(["python", "tools/" + Path(sys.argv[0]).name, *sys.argv[1:]]), "git": args.git,
           "settings": {"dense": "deploypipe train, the epochs and lr of each row's dense_recipe, on 40,000 training "
                                 "images (10,000 held out for validation), batch 128, cosine, wd 5e-4, crop-flip",
                        "device": args.device + (" (bfloat16 autocast, channels-last, data held on the GPU)"
                                                 if args.device != "cpu" else ""),
                        "finetune": {"epochs": args.finetune_epochs, "images": args.finetune_images,
                                     "lr": args.finetune_lr, "schedule": "cosine", "augment": "crop-flip",
                                     "batch_size": 128, "rows": "each row's `finetune` tag: ft{epochs}x{images}"
                                     "r@{lr}, with `kd` where the dense model distilled into the pruned one "
                                     "(tau 4, alpha 0.9: `deploypipe build --distill`)"},
                        "test": "the full CIFAR-10 test set (10,000 images); error_se binomial",
                        "budget": "MACs counted on the exported ONNX graph by one counter for both tools; "
                                  "torch-pruning's ratio bisected to meet it",
                        "latency": f"ONNX Runtime CPU, cpu-batch32 (batch 32, 1 thread), median of {args.repeats} "
                                   "interleaved repeats of 25 iterations", "smoke": args.smoke,
                        "torch_threads": args.threads,
                        "shared_machine": "2 cores shared with other engineers' work: latencies carry that load"},
           "wall_seconds": round(time.perf_counter() - started, 1), "machine": hardware_fingerprint().to_dict(),
           "python": platform.python_version(), "torch": torch.__version__, "results": results}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from filelock import FileLock

    with FileLock(str(CACHE / f"{out.name}.lock")):  # a run of another seed may share the file: keep its rows
        doc["results"] = merged(out, results, finetune_tag(args))
        tmp = out.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        tmp.replace(out)


def merged(out: Path, results: list, tag: str) -> list:
    """This run's rows over the rows already in ``out`` (other seeds, other fine-tuning, or
    other variants of the same (arch and dense recipe, seed, budget, fine-tuning), which keep
    their own latency measurements); sorted by arch, budget, seed, fine-tuning."""
    key = lambda r: (model_label(r), r["budget_x"], r["seed"], dense_id(r), r.get("finetune", ""))  # noqa: E731
    try:
        old = json.loads(out.read_text()).get("results", [])
    except (OSError, ValueError):
        old = []
    rows = {key(r): r for r in old}
    results = [{**r, "finetune": tag} for r in results]
    for r in results:
        before = rows.get(key(r), {})
        rows[key(r)] = {**r, "variants": {**before.get("variants", {}), **r["variants"]}}
    return [v for _, v in sorted(rows.items())]


LABELS = {"tp_l2_uniform": "Torch-Pruning L2 uniform", "tp_l2_global": "Torch-Pruning L2 global",
          "tp_taylor_global": "Torch-Pruning Taylor global", "tp_hessian_global": "Torch-Pruning Hessian global",
          "dp_default": "deploypipe classic default (L1 uniform, x8)", "dp_l2_global": "deploypipe L2 global, x8",
          "dp_taylor_global": "deploypipe Taylor global, x8", "dp_l2_global_r1": "deploypipe L2 global, unrounded",
          "dp_cpli": "deploypipe CPLI, x8", "dp_cpli_r1": "deploypipe CPLI, unrounded",
          "dp_cpli_global_r1": "deploypipe CPLI, L2 global, unrounded",
          "dp_taylor_percost_r1": "deploypipe Taylor per MAC, unrounded",
          "dp_fisher_percost_r1": "deploypipe Fisher per MAC, unrounded",
          "dp_fisher_percost": "deploypipe Fisher per MAC, x8",
          "dp_cpli_percost": "deploypipe default: CPLI, Fisher per MAC, x8",
          "dp_cpli_percost_r1": "deploypipe CPLI, Fisher per MAC, unrounded",
          "dp_latency": "deploypipe CPLI `--latency-ratio` = Torch-Pruning L2 global's measured ratio"}


def dense_id(row: dict) -> str:
    """Which dense model of its seed a row pruned ("" for rows measured before checkpoints were
    hashed, whose checkpoint is no longer at hand)."""
    return row["dense"].get("checkpoint_sha", "")


def model_label(row: dict) -> str:
    """The arch and its dense recipe (epochs; lr when not 0.1, as ``dense_tag``): rows of one
    arch trained differently are different models, never merged."""
    recipe = row.get("dense_recipe") or {}
    if "epochs" not in recipe:
        return row["arch"]
    lr = f", lr {recipe['lr']:g}" if recipe.get("lr", 0.1) != 0.1 else ""
    return f"{row['arch']} ({recipe['epochs']} ep{lr})"


def seed_mark(arch: str, seed: tuple, dense: dict) -> str:
    """" (s0′)" after a dense error whose seed has an earlier dense model in the table (retrained)."""
    n, sha = seed
    return f" (s{n}′)" if sha and any(s == n and not h for s, h in dense[arch]) else ""


def table(path: Path) -> str:
    """The README's table: per model, budget and variant, the error of each seed, their mean
    with its standard error (test-set sampling), MACs reduction and speedup (means over seeds).
    Rows fine-tuned with distillation say so; the dense row lists every seed's dense model, and
    every row's errors stand in the dense row's seed order, "—" where that seed was not run and
    "failed" where its cell ended in an error (a mean over other seeds than its neighbour's is
    not comparable with it)."""
    doc = json.loads(path.read_text())
    rows: dict = {}
    dense: dict = {}
    for r in doc["results"]:
        seed = (r["seed"], dense_id(r))  # a seed retrained later is another dense model: its own column
        dense.setdefault(model_label(r), {})[seed] = r["dense"]
        kd = str(r.get("finetune", "")).endswith(KD_TAG)
        for name, v in r["variants"].items():
            rows.setdefault((model_label(r), r["budget_x"], kd, name), []).append((seed, v))
    out = ["| model | budget | tool / settings | error % per seed (— not run) | mean error | MACs fewer | "
           "speed vs dense |",
           "|---|---|---|---|---|---|---|"]
    order = lambda k: (k[0], k[1], k[2], list(LABELS).index(k[3]) if k[3] in LABELS else 99)  # noqa: E731
    dense_done = set()
    for (arch, bx, kd, name) in sorted(rows, key=order):
        cells = sorted((s, v) for s, v in rows[(arch, bx, kd, name)] if "error" in v)
        if arch not in dense_done:
            errs = " / ".join(f"{100 * d['error']:.2f}{seed_mark(arch, seed, dense)}"
                              for seed, d in sorted(dense[arch].items()))
            out.append(f"| {arch} | dense | trained by `deploypipe train` | {errs} | | 1x | 1x |")
            dense_done.add(arch)
        if not cells:
            continue
        errs = [v["error"] for _, v in cells]
        se = math.sqrt(sum(v["error_se"] ** 2 for _, v in cells)) / len(cells)
        speed = np.mean([v["speedup"] for _, v in cells if "speedup" in v] or [float("nan")])
        macs = np.mean([v["macs_reduction"] for _, v in cells if "macs_reduction" in v] or [float("nan")])
        budget = f"{bx:g}x MACs" if name != "dp_latency" else f"TP's {bx:g}x latency"
        label = LABELS.get(name, name) + (", **KD fine-tuning**" if kd else "")
        by_seed, tried = dict(cells), {s for s, _ in rows[(arch, bx, kd, name)]}
        per_seed = " / ".join(f"{100 * by_seed[s]['error']:.2f}" if s in by_seed else "failed" if s in tried else "—"
                              for s in sorted(dense[arch]))
        out.append(f"| {arch} | {budget} | {label} | {per_seed} | {100 * np.mean(errs):.2f} ± {100 * se:.2f}% | "
                   f"{macs:.2f}x | {speed:.2f}x |")
    return "\n".join(out)


def main() -> int:
    from _benchlib import git_commit

    args = parse()
    if args.table:
        print(table(Path(args.out)))
        return 0
    args.git = git_commit()  # the code that runs: taken before others can commit
    if args.deadline:
        args.deadline = time.time() + 60 * args.deadline
    torch.set_num_threads(args.threads)
    CACHE.mkdir(parents=True, exist_ok=True)
    if args.smoke and args.out.endswith("cifar10.json"):
        args.out = args.out.replace("cifar10.json", "cifar10_smoke.json")
    cells, data, results, started = Cells(CACHE / "cells.json"), load_data(args), [], time.perf_counter()
    for arch in args.archs.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            dense_path = dense_checkpoint(args, arch, seed)
            for bx in (float(b) for b in args.budgets.split(",")):
                recipe = {"epochs": args.dense_epochs, "lr": args.dense_lr, "checkpoint": dense_path.name}
                results.append({**run_budget(args, cells, arch, seed, bx, data, dense_path), "dense_recipe": recipe})
                write(args, results, started)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
