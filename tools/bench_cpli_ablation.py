"""Which CPLI settings keep accuracy, before and after fine-tuning (issue 23).

resnet20 on CIFAR-10, the dense checkpoint of ``tools/bench_cifar.py`` (seed 0), pruned by
``deploypipe build --method cpli`` at 2x and 3x fewer MACs (the default allocation, widths
x8), each setting once; test error on the full test set before fine-tuning and after the
same fine-tuning as ``bench_cifar.py`` (2 epochs on 20,000 random training images, lr 0.05
cosine, crop-flip). Settings:

* ``taylor_lam1``: the abstract's first-order Taylor term weighed alike (the old default);
* ``fisher_lam1``: the second-order Fisher term weighed alike;
* ``lam0``: the reconstruction alone, Fisher ranking the next stage (the default now);
* ``select_importance``: the L1 channels of plain one-shot pruning, refitted;
* ``taylor_lam1_norefit``: ``taylor_lam1``'s selection without the refit.

Rows are written to ``--out`` as they finish; a rerun skips the ones there (``--force``
redoes them). CIFAR-10 from ``../shared/data`` (never committed).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import bench_cifar as cifar  # noqa: E402  (the benchmark's data, dense checkpoint, build and fine-tuning)
from _benchlib import git_commit  # noqa: E402

SETTINGS = {
    "taylor_lam1": ["--method-arg", "lam=1", "--method-arg", "loss=taylor"],
    "fisher_lam1": ["--method-arg", "lam=1", "--method-arg", "loss=fisher"],
    "lam0": [],
    "select_importance": ["--method-arg", "select=importance"],
    "taylor_lam1_norefit": ["--method-arg", "lam=1", "--method-arg", "loss=taylor", "--method-arg", "refit=false"],
}


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--settings", default=",".join(SETTINGS))
    p.add_argument("--budgets", default="2,3")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="redo rows already in --out")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cpli_ablation.json"))
    return p.parse_args()


def main() -> int:
    from deploypipe.measure.fingerprint import hardware_fingerprint

    args = parse()
    commit = git_commit()  # the code that runs: taken before others can commit
    bench = cifar.parse([])  # bench_cifar's defaults: its fine-tuning, its dense recipe
    torch.set_num_threads(bench.threads)
    out = Path(args.out)
    doc = json.loads(out.read_text()) if out.exists() else {"rows": []}
    done = {(r["budget_x"], r["setting"]) for r in doc["rows"]} if not args.force else set()
    data = cifar.load_data(bench)
    dense_path = cifar.dense_checkpoint(bench, "resnet20", args.seed)
    for bx in (float(b) for b in args.budgets.split(",")):
        for name in args.settings.split(","):
            if (bx, name) in done:
                continue
            start = time.perf_counter()
            with tempfile.TemporaryDirectory() as tmp:
                flags = ["--macs-budget", f"{bx:g}x", "--method", "cpli", *SETTINGS[name]]
                model = cifar.dp_build(bench, dense_path, flags, Path(tmp) / "run")
            before = cifar.error_of(model, data)
            ft_s = cifar.finetune(model, data, bench, args.seed)
            row = {"setting": name, "budget_x": bx, "flags": flags, "error_before_finetune": before["error"],
                   **cifar.error_of(model, data), "finetune_seconds": round(ft_s, 1),
                   "seconds": round(time.perf_counter() - start, 1)}
            doc["rows"] = [r for r in doc["rows"] if (r["budget_x"], r["setting"]) != (bx, name)] + [row]
            doc.update(what=__doc__.strip().splitlines()[0], commit=commit, seed=args.seed,
                       dense=str(dense_path.name), finetune=cifar.finetune_tag(bench),
                       machine=hardware_fingerprint().to_dict(), torch_threads=torch.get_num_threads())
            tmp_out = out.with_suffix(".tmp")
            tmp_out.write_text(json.dumps(doc, indent=1))
            tmp_out.replace(out)
            print(f"{bx:g}x {name:22s} before {before['error']:.4f} after {row['error']:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
