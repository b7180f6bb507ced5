"""Pieces shared by the MNIST benchmark scripts in tools/ (imported as ``_benchlib``: the
scripts run as ``python tools/NAME.py``, so this folder is on ``sys.path``)."""
from __future__ import annotations

import dataclasses
import fcntl
import subprocess
from pathlib import Path

LOCK = "/tmp/deploypipe-measure.lock"  # the shared measurement lock (flock) of this machine


CODE = ("deploypipe", "tools", "profiles", "pyproject.toml")  # what a benchmark's numbers depend on


def git_commit() -> str:
    """The short commit of this checkout, with ``+changes`` when its code (:data:`CODE`, not the
    results and READMEs that benchmarks rewrite as they go) differs from it; "unknown" outside
    git. Take it when a benchmark starts: others may commit while it runs."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", *CODE], cwd=root).returncode != 0
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+changes" if dirty else "")


def git_state(paths: tuple[str, ...] = CODE) -> dict:
    """The full commit of this checkout and the files under ``paths`` that differ from it
    (``uncommitted``: what the numbers were measured with on top of the commit)."""
    root = Path(__file__).resolve().parents[1]

    def git(*argv: str) -> str:
        return subprocess.run(["git", *argv], cwd=root, capture_output=True, text=True).stdout.rstrip("\n")

    return {"commit": git("rev-parse", "HEAD"),
            "uncommitted": [line[3:] for line in git("status", "--porcelain", "--", *paths).splitlines()]}


def lock_held(path: str = LOCK) -> bool:
    """Whether someone holds the measurement lock (our own ``flock`` parent, normally)."""
    try:
        with open(path, "a") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return True
            fcntl.flock(f, fcntl.LOCK_UN)
            return False
    except OSError:
        return False


def load_mnist_subset(train: int, val: int, test: int):
    """MNIST with at most ``train`` training images and the first ``val`` / ``test`` of the
    validation and test splits (deterministic)."""
    from torch.utils.data import TensorDataset

    from deploypipe.data import load_dataset

    data = load_dataset("mnist", seed=0, limit=train)

    def head(ds, n):
        return TensorDataset(*(t[:n] for t in ds.tensors))

    return dataclasses.replace(data, val=head(data.val, val), test=head(data.test, test))


def interleaved_latency(models: dict, shape, targets: dict[str, tuple[str, int]], repeats: int) -> dict:
    """ONNX Runtime latency of each PyTorch model, exported once: every model timed once per
    repeat on each ``targets`` entry (label -> (profile, iterations)), interleaved so that the
    machine's drift hits all alike; the median per model and label."""
    import tempfile
    from pathlib import Path

    import numpy as np

    from deploypipe.export import export_onnx
    from deploypipe.profiling import profile_onnx

    out = {k: {label: [] for label in targets} for k in models}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for name, m in models.items():
            paths[name] = Path(tmp) / f"{name}.onnx"
            export_onnx(m, paths[name], input_shape=shape)
        for _ in range(repeats):
            for name, path in paths.items():
                for label, (profile, iterations) in targets.items():
                    stats = profile_onnx(path, profile, per_layer=False, iterations=iterations).stats
                    out[name][label].append(stats.median)
    return {k: {label: float(np.median(v)) for label, v in d.items()} for k, d in out.items()}
