"""Pieces shared by the MNIST benchmark scripts in tools/ (imported as ``_benchlib``: the
scripts run as ``python tools/NAME.py``, so this folder is on ``sys.path``)."""
from __future__ import annotations

import dataclasses
import fcntl

LOCK = "/tmp/deploypipe-measure.lock"  # the shared measurement lock (flock) of this machine


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
