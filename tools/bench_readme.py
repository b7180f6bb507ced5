#!/usr/bin/env python3
"""The README's own examples, run as a newcomer runs them, with the figures the README quotes.

Each example is one ``deploypipe`` command in a fresh process, timed from outside; its
``report.json`` gives the accuracies, MACs and latencies:

  * ``demo``: README command 1 (resnet20 trained on digits, pruned to 65% of the dense latency on
    cpu-batch32, 10 fine-tuning epochs);
  * ``default_cpu``: the same model with every default (half the MACs, the ``cpu`` target at
    batch 1, 5 fine-tuning epochs), three times;
  * ``custom_cnn``: the example of "Your own model and data";
  * ``onnx_refit``: the demo's ``dense.onnx`` given as ONNX (no fine-tuning: least-squares refit);
  * ``methods``: every method's default build of a resnet20 trained on digits (``deploypipe train``,
    15 epochs, as ``zoo:`` trains it) at ``--ratio 0.4``;
  * ``real_graphs``: ``shrink --ratio 0.3 --verify`` on each real model the onnx wheel ships;
  * ``cifar10_decode``: the CIFAR-10 JPEG archive loaded cold (decoded) and again (from the cache),
    when the archive is at hand;
  * ``install``: the size of this venv's site-packages and of torch in it.

Usage (the results go to ``benchmarks/results/readme_examples.json``; a run of some examples
replaces theirs and keeps the others, each example carrying the commit that measured it)::

    .venv/bin/python tools/bench_readme.py
    .venv/bin/python tools/bench_readme.py --only demo,onnx_refit --out /tmp/r.json
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from deploypipe.measure.fingerprint import hardware_fingerprint
from deploypipe.utils.files import write_json

ROOT = Path(__file__).resolve().parents[1]
CIFAR = ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
EXAMPLES = ("demo", "default_cpu", "custom_cnn", "onnx_refit", "methods", "real_graphs", "cifar10_decode", "install")


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default=",".join(EXAMPLES), help=f"comma-separated subset of {','.join(EXAMPLES)}")
    p.add_argument("--archive", type=Path, default=CIFAR, help="CIFAR-10 JPEG archive for cifar10_decode")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "readme_examples.json")
    return p.parse_args()


def deploypipe(*args: str, env: dict | None = None) -> dict:
    """One CLI command in a fresh process: its wall time, exit code and the tail of its output."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "deploypipe", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    out = {"command": "deploypipe " + " ".join(args), "seconds": round(time.perf_counter() - start, 1),
           "returncode": proc.returncode}
    if proc.returncode:
        out["stderr_tail"] = proc.stderr[-800:]
    return out


def summary(run_dir: Path) -> dict:
    """The figures of a build's report.json that the README quotes."""
    r = json.loads((run_dir / "report.json").read_text())
    d, p = r["dense"], r["pruned"]
    out = {"dense_accuracy": d["accuracy"], "pruned_accuracy": p["accuracy"],
           "macs_reduction": d["macs"] / p["macs"], "params_reduction": d["params"] / p["params"],
           "target": r["target"]["name"], "batch": r["target"]["batch"]}
    if d.get("latency_ms") and p.get("latency_ms"):
        out["dense_median_ms"], out["pruned_median_ms"] = d["latency_ms"]["median"], p["latency_ms"]["median"]
        out["speedup"] = d["latency_ms"]["median"] / p["latency_ms"]["median"]
    if (r.get("speed") or {}).get("verdict"):  # dense and pruned timed in alternating bursts
        out["interleaved"] = {k: r["speed"][k] for k in ("dense_ms", "pruned_ms", "speedup", "low", "high",
                                                          "verdict", "bursts")}
    if r.get("reconstruction"):
        out["reconstruction"] = {k: v for k, v in r["reconstruction"].items() if k != "layers"}
    return out


def build(name: str, args: list[str], tmp: Path) -> dict:
    run_dir = tmp / name
    res = deploypipe("build", *args, "-o", str(run_dir))
    if res["returncode"] == 0:
        res.update(summary(run_dir))
    print(f"{name}: {json.dumps(res)[:300]}", flush=True)
    return res


def methods(tmp: Path) -> dict:
    """Every method's default build of a trained resnet20 at --ratio 0.4."""
    dense = tmp / "resnet20_digits.pt"  # trained as zoo:resnet20 is before a build (15 epochs)
    trained = deploypipe("train", "--arch", "resnet20", "--dataset", "digits", "--epochs", "15", "-o", str(dense))
    if trained["returncode"]:
        return {"train": trained}
    listed = subprocess.run([sys.executable, "-m", "deploypipe", "list", "methods"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout
    names = [line.split()[0] for line in listed.splitlines() if line.strip()]
    return {"train": trained, **{m: build(f"method_{m}", [str(dense), "--dataset", "digits", "--ratio", "0.4",
                                                          "--method", m], tmp) for m in names}}


def real_graphs(tmp: Path) -> dict:
    """The share of MACs that channel surgery at --ratio 0.3 removes from each of the onnx wheel's real
    models, and whether the oracle passed."""
    import onnx

    out = {}
    for model in sorted((Path(onnx.__file__).parent / "backend/test/data/light").glob("light_*.onnx")):
        name, report = model.stem.removeprefix("light_"), tmp / f"{model.stem}.json"
        res = deploypipe("shrink", str(model), "-o", str(tmp / model.name), "--ratio", "0.3", "--verify",
                         "--json", str(report), "-q")
        if res["returncode"] == 0:
            r = json.loads(report.read_text())
            res.update(macs_removed=1 - r["macs_after"] / r["macs_before"], oracle_passed=r["oracle"]["passed"],
                       oracle_max_abs=r["oracle"]["max_abs"], groups_pruned=r["groups_pruned"])
        out[name] = res
        print(f"{name}: {res.get('macs_removed')}", flush=True)
    return out


def cifar10_decode(archive: Path, tmp: Path) -> dict:
    """Loading cifar10:ARCHIVE twice in fresh processes: decoding the JPEGs, then from the cache."""
    if not archive.exists():
        return {"skipped": f"no archive at {archive}"}
    code = ("import time,sys; t=time.perf_counter(); from deploypipe.data import load_dataset; "
            f"d=load_dataset('cifar10:{archive}'); print(time.perf_counter()-t)")
    env = {**os.environ, "DEPLOYPIPE_CACHE": str(tmp / "cache")}
    runs = [subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
            for _ in range(2)]
    if any(r.returncode for r in runs):
        return {"error": next(r.stderr[-800:] for r in runs if r.returncode), "archive": str(archive)}
    times = [float(r.stdout.split()[-1]) for r in runs]
    return {"cold_seconds": round(times[0], 1), "cached_seconds": round(times[1], 1), "archive": str(archive)}


def install() -> dict:
    """Megabytes of this environment's site-packages, and of torch within it (every extra installed)."""
    import torch

    def mb(path: Path) -> int:
        return round(sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20)

    site = Path(torch.__file__).parents[1]
    return {"site_packages_mb": mb(site), "torch_mb": mb(Path(torch.__file__).parent), "site_packages": str(site),
            "note": "the venv of tools/setup.sh: core, every extra and the dev tools"}


def main() -> None:
    from _benchlib import git_commit

    args = parse()
    args.git = git_commit()  # the code that runs: taken before others can commit
    only = args.only.split(",")
    results = {}
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        if "demo" in only or "onnx_refit" in only:  # onnx_refit prunes the demo's dense.onnx
            demo = build("demo", ["zoo:resnet20", "--dataset", "digits", "--target", "cpu-batch32",
                                  "--latency-ratio", "0.65", "--epochs", "10"], tmp)
            if "demo" in only:
                results["demo"] = demo
        if "default_cpu" in only:
            # three runs: at batch 1 this 0.08-ms model's timings are mostly the machine's noise
            runs = [build(f"default_cpu_{i}", ["zoo:resnet20", "--dataset", "digits"], tmp) for i in range(3)]
            results["default_cpu"] = {**runs[0], "speedups": [r.get("speedup") for r in runs],
                                      "pruned_median_ms_per_run": [r.get("pruned_median_ms") for r in runs],
                                      "dense_median_ms_per_run": [r.get("dense_median_ms") for r in runs],
                                      "interleaved_per_run": [r.get("interleaved") for r in runs]}
        if "custom_cnn" in only:
            ex = "examples/custom_cnn"
            results["custom_cnn"] = build("custom_cnn", [f"{ex}/weights.pt", "--arch", f"{ex}/net.py:build",
                                                         "--dataset", f"py:{ex}/data.py:load", "--target",
                                                         "cpu-batch32", "--latency-ratio", "0.6", "--epochs", "3"], tmp)
        if "onnx_refit" in only:
            results["onnx_refit"] = build("onnx_refit", [str(tmp / "demo" / "dense.onnx"), "--dataset", "digits",
                                                         "--macs-budget", "2x"], tmp)
        if "methods" in only:
            results["methods"] = methods(tmp)
        if "real_graphs" in only:
            results["real_graphs"] = real_graphs(tmp)
        if "cifar10_decode" in only:
            results["cifar10_decode"] = cifar10_decode(args.archive, tmp)
    if "install" in only:
        results["install"] = install()
    write(args, results)


def write(args, results: dict) -> None:
    """Merge these examples into the results file: each keeps the commit, load and time it was run at."""
    stamp = {"git": args.git, "load_average": list(os.getloadavg()), "command": " ".join(sys.argv)}
    old = json.loads(args.out.read_text())["results"] if args.out.exists() else {}
    for value in results.values():
        value["run"] = stamp
    doc = {"benchmark": "the README's examples, run as written (tools/bench_readme.py)",
           "machine": hardware_fingerprint().to_dict(), "results": {**old, **results}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, doc)  # atomic
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
