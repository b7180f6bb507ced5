#!/usr/bin/env python3
"""GPU smoke run: does deploypipe's GPU path work on this machine, and what does it measure?

One command, a few minutes on one GPU, JSON to a folder (``gpu_smoke.json``, rewritten after
every section, so a run cut short still leaves what it measured):

* environment: driver, CUDA, torch, ONNX Runtime and its providers, TensorRT, whether
  deploypipe counts the GPU (a CUDA context opens and a kernel runs), the fingerprint;
* which backend ``--target gpu`` picks, or the sentence it fails with;
* for every GPU backend present (PyTorch on CUDA, native TensorRT, ONNX Runtime's TensorRT
  and CUDA providers; one that is absent is a skip with its reason), fp32 and fp16,
  resnet18 and resnet50 at 224x224, batch 1 and 32: the output error against ONNX Runtime
  on the CPU (fp32), dense against pruned-at-2x-fewer-MACs latency (interleaved repeats,
  medians) with the MACs ratio beside it, and the per-layer profile's coverage of the
  graph's convolutions; PyTorch also as eager launches, and run from the ONNX graph alone;
* the mission's command on the last model's checkpoint, ``deploypipe build resnet50-224.pt
  --target gpu-b32.toml --shapes input:32x3x224x224 --latency-ratio 0.55`` (``gpu`` at
  batch 32 with 100 timed iterations; no data: pruned by weights, widths from the measured
  latency table and loop), with the MACs reduction the latency it reached needed (``pt``;
  on the CPU, resnet18 at batch 2 on cpu-batch32);
* one ``deploypipe build zoo:resnet20 --dataset digits --target torch-cuda
  --latency-ratio 0.5`` verdict, plus the same at batch 512 on 32x32 inputs, where the GPU
  has enough work per inference for widths to matter.

Weights are random (latency does not depend on their values); BatchNorm statistics are
recalibrated on random inputs so that activations stay in fp16's range and the error
figures mean something. ``--device cpu`` runs every section with the CPU backends on small
inputs (CI runs it, so the script cannot rot).

    python tools/gpu_smoke.py --out OUT            # on a GPU machine (PYTHONPATH=.)
    python tools/gpu_smoke.py --out OUT --device cpu
    tools/gpu_check.sh OUT                         # the smoke run and the gpu test tier
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
GPU_BACKENDS = ("torch-cuda", "trt", "ort-trt", "ort-cuda")
CPU_BACKENDS = ("torch", "ort")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for gpu_smoke.json")
    p.add_argument("--work", help="folder for the models and builds (default: OUT/work)")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--models", help="zoo models (default: resnet18,resnet50; cpu: resnet18)")
    p.add_argument("--size", type=int, help="input side in pixels (default 224; cpu: 64)")
    p.add_argument("--batches", help="default 1,32 (cpu: 1,2)")
    p.add_argument("--repeats", type=int, help="interleaved dense/pruned repeats (default 3)")
    p.add_argument("--iterations", type=int, help="timed iterations a repeat (default 100; cpu: 5)")
    p.add_argument("--build-timeout", type=int, default=240, help="seconds per build (default 240)")
    p.add_argument("--sections", default="backends,rounding,builds",
                   help="what to run after the environment (default: backends,rounding,builds)")
    p.add_argument("--round-to", default=None,
                   help="channel multiples compared at 2x fewer MACs (default 8,32,64; cpu: 8,16)")
    p.add_argument("--rounding-batches", default=None,
                   help="batches of the rounding section (default 32,256; cpu: 2)")
    p.add_argument("--build-cases", default="pt,b512,batch1",
                   help="b512 (torch-cuda at batch 512 on 32x32), batch1 (the torch-cuda profile), "
                        "pt (the last model's checkpoint, `--target gpu` at batch 32, no data)")
    p.add_argument("--build-ratio", type=float, default=0.5, help="--latency-ratio of the b512 build")
    p.add_argument("--pt-ratio", type=float, default=None,
                   help="--latency-ratio of the pt build (default 0.55, 1.8x faster; cpu: 0.7)")
    p.add_argument("--pt-lut-step", type=int, default=64, help="--lut-step of the pt build (default 64)")
    args = p.parse_args(argv)
    args.work = args.work or str(Path(args.out) / "work")
    cpu = args.device == "cpu"
    args.models = (args.models or ("resnet18" if cpu else "resnet18,resnet50")).split(",")
    args.size = args.size or (64 if cpu else 224)
    args.batches = [int(b) for b in (args.batches or ("1,2" if cpu else "1,32")).split(",")]
    args.repeats = args.repeats or (1 if cpu else 3)
    args.rounding_batches = [int(b) for b in (args.rounding_batches or ("2" if cpu else "32,256")).split(",")]
    args.iterations = args.iterations or (5 if cpu else 100)
    args.backends = CPU_BACKENDS if cpu else GPU_BACKENDS
    args.sections = args.sections.split(",")
    args.round_to = [int(r) for r in (args.round_to or ("8,16" if cpu else "8,32,64")).split(",")]
    args.build_cases = args.build_cases.split(",")
    args.precisions = ("fp32",) if cpu else ("fp32", "fp16")
    return args


class Smoke:
    """The JSON document, written after every section; a failing section is recorded, the
    run goes on."""

    def __init__(self, args: argparse.Namespace):
        self.args, self.out = args, Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.doc: dict[str, Any] = {
            "tool": "tools/gpu_smoke.py", "device": args.device, "commit": _commit(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "settings": {k: v for k, v in vars(args).items() if k not in ("out", "work")},
            "timing_note": "GPU latencies are GPU compute time (CUDA events around a run whose "
                           "inputs are already on the device; no host copies), as trtexec's "
                           "'GPU Compute Time'; each engine says how it was timed",
            "sections": {}, "errors": []}

    def section(self, name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        print(f"== {name}", flush=True)
        try:
            result = fn()
            self.doc[name] = result
        except Exception as exc:  # the smoke run reports every failure and goes on
            result = None
            self.doc["errors"].append({"section": name, "error": f"{type(exc).__name__}: {exc}",
                                       "traceback": traceback.format_exc()[-3000:]})
            print(f"   {name} failed: {type(exc).__name__}: {exc}", flush=True)
        self.doc["sections"][name] = round(time.perf_counter() - t0, 1)
        self.write()
        return result

    def partial(self, name: str) -> Callable[[Any], None]:
        """A callback that records a section's results so far and writes the JSON."""
        def record(value: Any) -> None:
            self.doc[name] = value
            self.write()
        return record

    def write(self) -> None:
        path = self.out / "gpu_smoke.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.doc, indent=2, default=str) + "\n")
        os.replace(tmp, path)


# -- environment ----------------------------------------------------------------------------
def environment() -> dict[str, Any]:
    import onnxruntime as ort
    import torch

    from deploypipe.backends._gpu import gpu_missing_reason
    from deploypipe.measure.fingerprint import hardware_fingerprint

    env: dict[str, Any] = {
        "python": platform.python_version(), "torch": torch.__version__,
        "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
        "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
        "onnxruntime": ort.__version__, "ort_providers": ort.get_available_providers(),
        "tensorrt": _tensorrt_version(), "nvidia_smi": _nvidia_smi(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "deploypipe_gpu_missing_reason": gpu_missing_reason(),
        "fingerprint": hardware_fingerprint().to_dict()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env["gpu"] = {"name": props.name, "capability": f"{props.major}.{props.minor}",
                      "memory_gib": round(props.total_memory / 2**30, 1),
                      "multiprocessors": props.multi_processor_count}
    return env


def _tensorrt_version() -> str | None:
    try:
        import tensorrt
    except Exception as exc:  # absent, or present but broken: both are findings
        return None if isinstance(exc, ImportError) else f"import failed: {exc}"
    return tensorrt.__version__


def _nvidia_smi() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,clocks.max.sm",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or out.stderr.strip()[:300]


def chooser() -> dict[str, Any]:
    from deploypipe.backends import backend_for_target
    from deploypipe.errors import DeploypipeError
    from deploypipe.targets import load_target

    try:
        backend = backend_for_target(load_target("gpu"))
    except DeploypipeError as exc:
        return {"picked": None, "sentence": exc.sentence()}
    return {"picked": backend.name, "class": type(backend).__name__,
            "providers": list(getattr(backend, "providers", None) or [])}


# -- models -----------------------------------------------------------------------------------
def prepare_models(args, folder: Path) -> dict[str, Any]:
    """Per zoo model: dense and pruned (2x fewer MACs, widths x8) exported to ONNX with
    their checkpoints beside them; the MACs and parameters of both."""
    info = {}
    for name in args.models:
        dense, shape = _dense(name, args)
        pruned, macs = _prune(dense, shape)
        sub = folder / name
        sub.mkdir(parents=True, exist_ok=True)
        for variant, model in (("dense", dense), ("pruned", pruned)):
            _export(model, sub / f"{variant}.onnx", shape, name)
        info[name] = {"input": list(shape[1:]), "macs_dense": macs[0], "macs_pruned": macs[1],
                      "macs_reduction": macs[0] / macs[1],
                      "params_dense": _params(dense), "params_pruned": _params(pruned)}
        print(f"   {name}: {macs[0] / 1e9:.2f} -> {macs[1] / 1e9:.2f} GMACs "
              f"({macs[0] / macs[1]:.2f}x fewer)", flush=True)
    return info


def _dense(name: str, args):
    """A zoo model at ``--size`` with seeded random weights and calibrated BatchNorm."""
    import torch

    from deploypipe.models import create_model

    torch.manual_seed(0)
    dense = create_model(name, input_size=(args.size, args.size)).eval()
    shape = (1, 3, args.size, args.size)
    _calibrate_bn(dense, shape, args.device)
    return dense, shape


def _export(model, path: Path, shape, arch: str) -> None:
    """The ONNX file and, beside it, the checkpoint the torch backends run."""
    from deploypipe.checkpoint import save_checkpoint
    from deploypipe.export import export_onnx

    export_onnx(model, path, input_shape=shape)
    save_checkpoint(path.with_suffix(".pt"), model, arch=arch)


def _calibrate_bn(model, shape, device: str) -> None:
    """BatchNorm running statistics from a few random batches (cumulative average)."""
    import torch

    dev = torch.device("cuda" if device == "cuda" and torch.cuda.is_available() else "cpu")
    model.to(dev)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(4):
            model(torch.randn(16, *shape[1:], device=dev))
    model.eval().cpu()


def _prune(dense, shape, round_to: int = 8):
    from deploypipe.prune.budget import Budget
    from deploypipe.prune.methods import PruneContext, PruneRequest, create_method
    from deploypipe.prune.torch_groups import TorchPruner

    pruned = copy.deepcopy(dense)
    pruner = TorchPruner(pruned, shape)
    before = pruner.analysis.macs
    request = PruneRequest(budget=Budget("macs", 2.0, "reduction"), importance="l1",
                           round_to=round_to)
    create_method("oneshot").run(PruneContext(pruner, request))
    return pruned.eval(), (before, pruner.analysis.macs)


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


# -- backends ---------------------------------------------------------------------------------
def bench_backends(args, folder: Path, smoke: Smoke) -> None:
    """Every backend, model, precision and batch; rows appended as they are measured."""
    from deploypipe.backends.runtimes import RUNTIMES

    runs, skipped = smoke.doc.setdefault("runs", []), smoke.doc.setdefault("skipped", {})
    for name in args.backends:
        if reason := RUNTIMES.get(name).unavailable():
            skipped[name] = reason
            print(f"   {name}: skipped ({reason})", flush=True)
            continue
        for model in args.models:
            for precision in args.precisions:
                for batch in args.batches:
                    row = _guarded(lambda: _one_run(args, folder / model, name, precision, batch),
                                   {"model": model, "backend": name, "precision": precision,
                                    "batch": batch})
                    runs.append(row)
                    _say(row)
                    smoke.write()


def _guarded(fn: Callable[[], dict], key: dict) -> dict:
    try:
        return {**key, **fn()}
    except Exception as exc:  # one failing combination is a finding, not the end of the run
        return {**key, "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc()[-2000:]}


def _one_run(args, sub: Path, name: str, precision: str, batch: int) -> dict[str, Any]:
    engines = _engines(name, sub, precision, batch, args)
    try:
        row = {"timing": _timing_of(engines["dense"]),
               "providers": list(getattr(engines["dense"], "providers", [])),
               **_latency(engines, batch, args),
               "error_vs_cpu": {v: _error_vs_cpu(e, sub / f"{v}.onnx", batch)
                                for v, e in engines.items() if v in ("dense", "pruned")},
               "layer_profile": _coverage(engines["pruned"], sub / "pruned.onnx", batch)}
        if name in ("torch-cuda", "torch") and batch == max(args.batches):
            row["variants"] = _torch_variants(name, sub, precision, batch, args)
    finally:
        for e in engines.values():
            e.close()
    return row


def _target(name: str, precision: str, batch: int, sub: Path):
    from deploypipe.backends.runtimes import RUNTIMES
    from deploypipe.targets import load_target

    base = dataclasses.replace(load_target("gpu-trt-fp16"), precision=precision, batch=batch)
    return RUNTIMES.get(name).target(base)


def _engines(name: str, sub: Path, precision: str, batch: int, args, **torch_kw) -> dict:
    from deploypipe.backends.runtimes import RUNTIMES
    from deploypipe.backends.torch_cuda import TorchBackend

    spec, target = RUNTIMES.get(name), _target(name, precision, batch, sub)
    if spec.backend == "torch":
        backend = TorchBackend(**torch_kw)
        return {v: backend.build(sub / f"{v}.onnx", target) for v in ("dense", "pruned")}
    backend = spec.create()
    return {v: backend.build(sub / f"{v}.onnx", target, cache_dir=sub / "cache")
            for v in ("dense", "pruned")}


def _timing_of(engine) -> str:
    from deploypipe.profiling import timing_of

    return timing_of(engine)


def _latency(engines: dict, batch: int, args) -> dict[str, Any]:
    """Every engine timed in alternation ``repeats`` times; medians of the medians, and the
    speed-up of each against ``dense``."""
    medians: dict[str, list[float]] = {v: [] for v in engines}
    cvs: dict[str, list[float]] = {v: [] for v in engines}
    for r in range(args.repeats):
        for v, engine in engines.items():
            stats = engine.time(batch, 20 if r == 0 else 3, args.iterations)
            medians[v].append(stats.median)
            cvs[v].append(stats.cv)
    ms = {v: statistics.median(m) for v, m in medians.items()}
    out = {f"{v}_ms": m for v, m in ms.items()}
    out["speedup" if set(ms) == {"dense", "pruned"} else "speedups"] = (
        ms["dense"] / ms["pruned"] if set(ms) == {"dense", "pruned"}
        else {v: ms["dense"] / m for v, m in ms.items() if v != "dense"})
    return {**out, "repeats_ms": medians, "cv": {v: statistics.median(c) for v, c in cvs.items()}}


def rounding(args, folder: Path) -> dict[str, Any]:
    """The channel multiple that this GPU's kernels want: the last model pruned to 2x fewer
    MACs with widths rounded to each of ``--round-to``, timed against dense, interleaved, at
    each of ``--rounding-batches``; with the arithmetic rate each one reaches (2 x MACs x
    batch / latency): far under the GPU's peak, a model is bound by memory traffic and
    per-kernel latency, which shrink with width rather than with MACs."""
    name, sub = args.models[-1], folder / args.models[-1] / "rounding"
    sub.mkdir(parents=True, exist_ok=True)
    dense, shape = _dense(name, args)
    variants, macs = {"dense": dense}, {}
    for r in args.round_to:
        variants[f"x{r}"], (macs["dense"], macs[f"x{r}"]) = _prune(dense, shape, r)
    for v, model in variants.items():
        _export(model, sub / f"{v}.onnx", shape, name)
    runs = [_rounding_at(args, sub, name, variants, macs, batch) for batch in args.rounding_batches]
    return {**runs[-1], "by_batch": runs}


def _rounding_at(args, sub: Path, name: str, variants: dict, macs: dict, batch: int) -> dict[str, Any]:
    from deploypipe.backends.torch_cuda import TorchBackend

    precision = args.precisions[-1]
    backend = TorchBackend()
    target = _target(args.backends[0], precision, batch, sub)
    engines = {}
    try:
        for v in variants:
            engines[v] = backend.build(sub / f"{v}.onnx", target)
        timed = _latency(engines, batch, args)
    finally:
        for e in engines.values():
            e.close()
    print(f"   {name} {precision} b{batch}: " + ", ".join(
        f"{v} x{s:.2f} at {macs['dense'] / macs[v]:.2f}x fewer MACs"
        for v, s in timed["speedups"].items()), flush=True)
    tflops = {v: 2 * macs[v] * batch / (timed[f"{v}_ms"] / 1e3) / 1e12 for v in variants
              if timed.get(f"{v}_ms")}
    return {"model": name, "precision": precision, "batch": batch, "backend": args.backends[0],
            "macs": macs, "macs_reduction": {v: macs["dense"] / m for v, m in macs.items()},
            "tflops": tflops, **timed}


def _error_vs_cpu(engine, onnx_path: Path, batch: int) -> dict[str, Any]:
    """Outputs on one seeded batch against ONNX Runtime on the CPU in fp32."""
    import numpy as np

    from deploypipe.backends import create_backend
    from deploypipe.targets import load_target

    with create_backend("onnxruntime").build(onnx_path, load_target("cpu")) as ref_engine:
        feeds = ref_engine.feeds(batch, seed=1)
        ref = np.asarray(ref_engine.run(feeds)[0], dtype=np.float64)
    got = np.asarray(engine.run(feeds)[0], dtype=np.float64)
    scale = float(np.abs(ref).max()) or 1.0
    return {"max_abs": float(np.abs(got - ref).max()), "max_rel_to_scale":
            float(np.abs(got - ref).max()) / scale, "output_scale": scale,
            "finite": bool(np.isfinite(got).all()),
            "top1_agreement": float((got.argmax(-1) == ref.argmax(-1)).mean())}


def _coverage(engine, onnx_path: Path, batch: int) -> dict[str, Any]:
    """How much of the graph the per-layer profile names: the Conv/Gemm nodes that appear
    in some layer, and the share of profiled time mapped to ONNX nodes."""
    import onnx

    layers = engine.profile_layers(batch, 10)
    convs = {n.name for n in onnx.load(str(onnx_path)).graph.node if n.op_type in ("Conv", "Gemm")}
    seen = {node for layer in layers for node in (layer.onnx_nodes or (layer.onnx_node,)) if node}
    total = sum(layer.timeMs for layer in layers) or 1.0
    mapped = sum(layer.timeMs for layer in layers if layer.onnx_node or layer.onnx_nodes)
    return {"layers": len(layers), "conv_gemm_nodes": len(convs),
            "conv_gemm_covered": len(convs & seen) / max(1, len(convs)),
            "time_mapped_to_onnx": mapped / total,
            "top": [{"name": layer.name, "op": layer.op_type, "median_ms": layer.medianMs}
                    for layer in sorted(layers, key=lambda x: -x.timeMs)[:5]]}


def _torch_variants(name: str, sub: Path, precision: str, batch: int, args) -> dict[str, Any]:
    """PyTorch timed as eager launches, with its BatchNorms left unfolded, and run from the
    ONNX graph alone (no .pt beside)."""
    import shutil

    out: dict[str, Any] = {}
    for variant, options in (("eager", {"cuda_graph": False}),
                             ("unfolded", {"fold_batchnorm": False})):
        engines = _engines(name, sub, precision, batch, args, **options)
        try:
            out[variant] = {"timing": _timing_of(engines["dense"]),
                            **_latency(engines, batch, args)}
        finally:
            for e in engines.values():
                e.close()
    alone = sub / "onnx-only"
    alone.mkdir(exist_ok=True)
    for v in ("dense", "pruned"):
        shutil.copy(sub / f"{v}.onnx", alone / f"{v}.onnx")
    engines = _engines(name, alone, precision, batch, args)
    try:
        out["from_onnx"] = {"timing": _timing_of(engines["dense"]),
                            **_latency(engines, batch, args),
                            "error_vs_cpu": _error_vs_cpu(engines["pruned"], alone / "pruned.onnx",
                                                          batch)}
    finally:
        for e in engines.values():
            e.close()
    return out


def _say(row: dict) -> None:
    head = f"   {row['backend']:10s} {row['model']:9s} {row['precision']} b{row['batch']:<3d}"
    if "error" in row:
        print(f"{head} FAILED {row['error'][:200]}", flush=True)
        return
    err = row["error_vs_cpu"]["pruned"]["max_rel_to_scale"]
    print(f"{head} dense {row['dense_ms']:.3f} ms pruned {row['pruned_ms']:.3f} ms "
          f"x{row['speedup']:.2f}  err {err:.1e}  conv coverage "
          f"{row['layer_profile']['conv_gemm_covered']:.0%}", flush=True)


# -- builds -----------------------------------------------------------------------------------
def builds(args, out: Path, done: Callable[[list], None] = lambda rows: None) -> list[dict[str, Any]]:
    """The latency-budget build of the issue, one with enough work per inference, and the
    mission's command on the last model's checkpoint (``pt``); ``done(rows)`` after each build
    (the JSON keeps the builds that ended when a later one is cut short)."""
    resnet20 = ["zoo:resnet20", "--dataset", "digits"]
    if args.device == "cpu":  # CI: the same code paths on the CPU, short
        cases = {"cpu-ratio-0.7": [*resnet20, "--target", "cpu-batch32", "--latency-ratio", "0.7",
                                   "--pretrain-epochs", "2", "--epochs", "1",
                                   "--latency-rounds", "3"]}
        cases.update([_checkpoint_case(args, out, "cpu-batch32", batch=2)])
    else:
        profile = _write_profile(out / "torch-cuda-b512.toml")
        ratio = f"{args.build_ratio:g}"
        every = {"b512": lambda: (f"torch-cuda-b512-32px-ratio-{ratio}", [
                     *resnet20, "--target", str(profile), "--latency-ratio", ratio,
                     "--input-size", "32"]),
                 "batch1": lambda: ("torch-cuda-ratio-0.5", [
                     *resnet20, "--target", "torch-cuda", "--latency-ratio", "0.5"]),
                 "pt": lambda: _checkpoint_case(args, out, str(_write_gpu_b32(out / "gpu-b32.toml")),
                                                batch=32)}
        cases = dict(every[c]() for c in args.build_cases)
    rows: list[dict[str, Any]] = []
    for name, extra in cases.items():
        rows.append(_build(name, extra, out / name, args.build_timeout))
        done(rows)
    return rows


def _checkpoint_case(args, out: Path, target: str, *, batch: int) -> tuple[str, list[str]]:
    """``deploypipe build MODEL.pt --target TARGET --shapes input:BxCxHxW --latency-ratio R``
    on the last model (random weights, BatchNorm calibrated), with no data: the mission's
    command, pruned by weights only, its widths chosen by the latency table and the loop."""
    name = args.models[-1]
    dense, shape = _dense(name, args)
    path = out / "checkpoints" / f"{name}-{args.size}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    from deploypipe.checkpoint import save_checkpoint

    save_checkpoint(path, dense, arch=name)
    dims = "x".join(str(d) for d in (batch, *shape[1:]))
    ratio = f"{args.pt_ratio or (0.7 if args.device == 'cpu' else 0.55):g}"
    return (f"{name}-{args.size}px-b{batch}-ratio-{ratio}",
            [str(path), "--target", target, "--shapes", f"input:{dims}", "--latency-ratio", ratio,
             "--lut-step", str(args.pt_lut_step)])


def _write_profile(path: Path) -> Path:
    """torch-cuda at batch 512 on 32x32 digits, with 100 timed iterations instead of 500 so
    that the latency table and the loop fit the smoke run's minutes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('name = "torch-cuda-b512"\nbackend = "torch"\ndevice = "cuda"\n'
                    'precision = "fp16"\nbatch = 512\nround_to = 8\n'
                    'warmup = 10\niterations = 100\n\n[tolerances]\natol = 1e-2\nrtol = 1e-2\n')
    return path


def _write_gpu_b32(path: Path) -> Path:
    """``--target gpu`` (the best GPU backend, chosen at run time) at batch 32, with 100 timed
    iterations instead of 500: a dense resnet50 takes ~2.4 ms there, and the latency table
    times it beside every group's widths."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('name = "gpu-b32"\nauto = true\ndevice = "cuda"\nprecision = "fp16"\nbatch = 32\n'
                    'round_to = 8\nwarmup = 10\niterations = 100\n\n'
                    '[tolerances]\natol = 1e-2\nrtol = 1e-2\n')
    return path


def _build(name: str, extra: list[str], run: Path, timeout: int) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "deploypipe", "build", *extra, "-o", str(run)]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    t0 = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                              cwd=ROOT)
        rc, tail = done.returncode, (done.stdout + done.stderr)[-3000:]
    except subprocess.TimeoutExpired as exc:
        rc, tail = None, f"timed out after {timeout} s: {str(exc.stdout or '')[-1500:]}"
    row: dict[str, Any] = {"name": name, "command": " ".join(cmd[2:]), "exit_code": rc,
                           "seconds": round(time.perf_counter() - t0, 1), "output_tail": tail}
    report = run / "report.json"
    if report.is_file():
        row["verdict"] = _verdict(json.loads(report.read_text()))
    print(f"   {name}: exit {rc} in {row['seconds']} s; "
          f"{(row.get('verdict') or {}).get('summary', tail[-300:])}", flush=True)
    return row


def _verdict(report: dict) -> dict[str, Any]:
    result = report.get("latency_result") or {}
    final, budget = result.get("final_pruned_ms"), result.get("final_budget_ms")
    ratio = final / budget if final and budget else None
    within = ratio is not None and 0.95 <= ratio <= 1.0
    macs = {v: (report.get(v) or {}).get("macs") for v in ("dense", "pruned")}
    dense_ms = result.get("final_dense_ms")
    return {"target": report.get("target"), "loop": {k: result.get(k) for k in (
                "met", "within_tolerance", "budget_ms", "measured_ms", "dense_ms",
                "dense_spread", "sentence")},
            "final_dense_ms": result.get("final_dense_ms"), "final_pruned_ms": final,
            "final_budget_ms": budget, "final_to_budget": ratio,
            "final_within_5pct_under": within, "rounds": len(report.get("latency_loop") or []),
            "accuracy": {v: (report.get(v) or {}).get("accuracy") for v in ("dense", "pruned")},
            "macs": macs,
            "macs_reduction": macs["dense"] / macs["pruned"] if all(macs.values()) else None,
            "speedup": dense_ms / final if dense_ms and final else None,
            "stage_seconds": {st.get("name"): st.get("seconds") for st in report.get("stages") or []},
            "verification_passed": (report.get("verification") or {}).get("passed"),
            "summary": (f"final pruned {final:.4g} ms for a budget of {budget:.4g} ms "
                        f"({ratio:.3f} of it; {'within' if within else 'outside'} 5% under)"
                        if ratio else "no final latency check in the report")}


def _commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=ROOT, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    smoke = Smoke(args)
    env = smoke.section("environment", environment)
    if args.device == "cuda" and not (env or {}).get("cuda_available"):
        print("gpu_smoke: torch sees no CUDA device; use --device cpu here", file=sys.stderr)
        return 2
    smoke.section("chooser", chooser)
    folder = Path(args.work) / "models"
    if "backends" in args.sections and smoke.section(
            "models", lambda: prepare_models(args, folder)) is not None:
        smoke.section("backends", lambda: bench_backends(args, folder, smoke))
    if "rounding" in args.sections:
        smoke.section("rounding", lambda: rounding(args, folder))
    if "builds" in args.sections:
        smoke.section("builds", lambda: builds(args, Path(args.work), smoke.partial("builds")))
    smoke.doc["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    smoke.write()
    failed = _failures(smoke.doc, args.device)
    print(f"wrote {Path(args.out) / 'gpu_smoke.json'} ({len(smoke.doc['errors'])} section "
          f"errors{'; ' + '; '.join(failed) if failed else ''})", flush=True)
    return 1 if smoke.doc["errors"] or failed else 0


def _failures(doc: dict, device: str) -> list[str]:
    """What makes the run a failure besides a section's error: a backend run that failed and,
    on the CPU (CI), a build that did not end with a report (on a GPU a refused budget is a
    verdict, recorded, not a failure)."""
    out = [f"{r['backend']} {r['model']} {r['precision']} b{r['batch']} failed"
           for r in doc.get("runs", []) if "error" in r]
    if device == "cpu":
        out += [f"build {b['name']} exited {b['exit_code']}" for b in doc.get("builds") or []
                if b["exit_code"] != 0]
    return out


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
